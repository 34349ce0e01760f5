"""The template drafter: every tier text of a plan, merged in tier order, grounded, marked as the template's."""

from __future__ import annotations

from annotations import template_drafter
from pipeline.contracts.categories import ISAID
from pipeline.contracts.grounding import ground, targets_of
from pipeline.contracts.records import Group
from tests.annotations.objects import CAR, COURT, PLANE, obj, patch_plan


def test_draft_orders_instances_by_mark_then_groups_and_grounds_every_tag():
    plane, court = obj(1, PLANE, 5000), obj(2, COURT, 3000)
    for o, mark, tag in ((plane, 2, "plane-1"), (court, 1, "tennis court-1")):
        o.tier, o.mark, o.tag, o.size, o.position = "instance", mark, tag, "large", "center"
    cars = Group(1, "small vehicles-1", CAR, "small vehicle", "1x1", "whole image", "left", 3, "three", [3], {},
                 (0, 0, 1, 1), 1)
    d = template_drafter.draft(patch_plan([plane, court, obj(3, CAR, 100)], [cars]), ISAID)
    assert list(d["instances"]) == ["tennis court-1", "plane-1"] and list(d["groups"]) == ["small vehicles-1"]
    assert d["description"] == " ".join([d["holistic"], *d["instances"].values(), *d["groups"].values()])
    g = ground(d["description"], targets_of(patch_plan([plane, court], [cars])))
    assert g.ok and not g.missing and [p.tag for p in g.phrases] == ["tennis court-1", "plane-1", "small vehicles-1"]
    assert (template_drafter.DRAFTER, template_drafter.VERSION) == ("template", "1")
