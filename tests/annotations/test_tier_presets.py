"""The two tier rules: the `cells` preset plans exactly as the rule before it did, `density` (the default) plans
GeoPixelD's few large groups; a preset is validated, overridable and part of the config fingerprint."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from annotations.plan import Clipped, plan_objects
from pipeline.contracts import masks
from pipeline.contracts.categories import ISAID
from pipeline.contracts.config import TIER_PRESETS, PlanConfig, TierRule
from pipeline.contracts.records import PlannedObject

SIZE = 800
SHIP, COURT, LV, CAR, HELI, POOL, PLANE = 1, 4, 8, 9, 10, 11, 14


def rect(oid: int, cat: int, x0: int, y0: int, w: int, h: int, truncated: bool = False) -> Clipped:
    crop = np.ones((h, w), bool)
    o = PlannedObject(object_id=oid, category_id=cat, category=ISAID[cat].display,
                      rle=masks.crop_to_rle(crop, x0, y0, SIZE, SIZE), bbox=(float(x0), float(y0), float(w), float(h)),
                      area=w * h, centroid=(x0 + (w - 1) / 2, y0 + (h - 1) / 2), position="", size="",
                      area_fraction=w * h / SIZE**2, orientation=None, angle=None, elongation=1.0, truncated=truncated)
    return Clipped(o, crop, x0, y0)


def scene() -> list[Clipped]:
    """A patch with a bit of everything the rules treat differently."""
    items = [rect(100 + i, CAR, 420 + (i % 12) * 30, 430 + (i // 12) * 30, 10, 20) for i in range(120)]  # a lot
    items += [rect(300, CAR, 20, 20, 10, 20)]  # a lone car, top left
    items += [rect(310 + i, LV, 40 + i * 60, 300, 15, 50) for i in range(5)]  # a row of five trucks
    items += [rect(320, SHIP, 700, 40, 60, 25), rect(321, SHIP, 100, 700, 12, 6)]  # a big ship, a small boat
    items += [rect(330 + i, COURT, 40 + i * 70, 420, 30, 50) for i in range(3)]  # three courts
    items += [rect(340, COURT, 0, 600, 20, 20, truncated=True)]  # a court's sliver at the border
    items += [rect(350 + i, PLANE, 300 + i * 90, 40, 60, 60) for i in range(4)]  # four planes
    items += [rect(360, HELI, 250, 250, 20, 20)]  # a small helicopter
    items += [rect(370 + i, POOL, 30 + i * 40, 150, 25, 25) for i in range(2)]  # two pools
    return items


def cfg(**tiers) -> PlanConfig:
    return PlanConfig(source={"root": "x"}, output={"out": "y"}, tiers=tiers)


def summary(tiers: dict):
    objects, groups, marks = plan_objects(scene(), ISAID, cfg(**tiers), SIZE, SIZE)
    return ([(m.number, m.object_id) for m in marks], sorted((o.object_id, o.tag) for o in objects if o.tag),
            [(g.tag, g.grid, g.cell, g.position, g.count, g.quantity, sum(g.member_ids), g.bbox, g.area) for g in groups],
            sorted((o.object_id, o.tier) for o in objects if o.tier != "group"))


# What geopixeld planned for scene() before the density rule (commit da96b17, TierRule() then), recorded by running
# that code: the cells preset must give it unchanged.
BEFORE = (
    [(1, 350), (2, 351), (3, 352), (4, 353), (5, 330), (6, 331), (7, 332)],
    [(330, "tennis court-1"), (331, "tennis court-2"), (332, "tennis court-3"), (350, "plane-1"), (351, "plane-2"),
     (352, "plane-3"), (353, "plane-4")],
    [("ships-1", "1x1", "whole image", "top right", 2, "two", 641, (100.0, 40.0, 660.0, 666.0), 1572),
     ("tennis courts-1", "1x1", "whole image", "bottom left", 1, "a single", 340, (0.0, 600.0, 20.0, 20.0), 400),
     ("large vehicles-1", "1x2", "left", "left", 5, "a few", 1560, (40.0, 300.0, 255.0, 50.0), 3750),
     ("small vehicles-1", "3x3", "top left", "top left", 1, "a single", 300, (20.0, 20.0, 10.0, 20.0), 200),
     ("small vehicles-2", "3x3", "center", "center", 16, "many", 1912, (420.0, 430.0, 100.0, 110.0), 3200),
     ("small vehicles-3", "3x3", "right", "right", 32, "numerous", 4016, (540.0, 430.0, 220.0, 110.0), 6400),
     ("small vehicles-4", "3x3", "bottom", "bottom", 24, "many", 4308, (420.0, 550.0, 100.0, 170.0), 4800),
     ("small vehicles-5", "3x3", "bottom right", "bottom right", 48, "numerous", 8904, (540.0, 550.0, 220.0, 170.0),
      9600),
     ("helicopters-1", "1x1", "whole image", "top left", 1, "a single", 360, (250.0, 250.0, 20.0, 20.0), 400),
     ("swimming pools-1", "1x1", "whole image", "top left", 2, "two", 741, (30.0, 150.0, 65.0, 25.0), 1250)],
    [(330, "instance"), (331, "instance"), (332, "instance"), (350, "instance"), (351, "instance"),
     (352, "instance"), (353, "instance")],
)


def test_the_cells_preset_plans_as_the_earlier_rule_did():
    assert summary({"preset": "cells"}) == BEFORE


def test_the_density_preset_plans_few_groups_and_drops_only_what_it_says():
    marks, tags, groups, tiers = summary({})
    # the lot and the lone car: one group for the patch, not five (the lot is not spread over it)
    assert [g[:6] for g in groups] == [("small vehicles-1", "1x1", "whole image", "bottom right", 121,
                                        "more than a hundred")]
    assert dict(tags)[320] == "ship-1"  # two ships are too few to group: the big one is marked
    assert [n for n, _ in marks] == list(range(1, 9))
    dropped = {oid for oid, tier in tiers if tier == "dropped"}
    # too few to group and too small to mark: the boat, five trucks, the court sliver, the helicopter, two pools
    assert dropped == {321, 310, 311, 312, 313, 314, 340, 360, 370, 371}
    assert summary({}) == summary({"preset": "density"})


def test_explicit_values_win_over_the_preset():
    rule = TierRule(preset="cells", min_group_size=2)
    assert (rule.min_group_size, rule.cell_members, rule.max_instances_per_category) == (2, None, 8)
    assert TierRule(preset="density", cell_members=None).cell_members is None
    assert TierRule.model_validate(TierRule(preset="cells").model_dump()) == TierRule(preset="cells")  # round trip


def test_each_preset_sets_only_tier_fields():
    assert set(TIER_PRESETS) == {"density", "cells"}
    for values in TIER_PRESETS.values():
        assert set(values) <= set(TierRule.model_fields) - {"preset"}
        TierRule(**values)  # valid values


def test_an_unknown_preset_is_refused_with_its_field_named():
    with pytest.raises(ValidationError, match="preset"):
        cfg(preset="nine-groups")


def test_plans_of_different_rules_have_different_fingerprints():
    prints = {cfg().fingerprint(), cfg(preset="cells").fingerprint(), cfg(preset="cells", min_group_size=2).fingerprint()}
    assert len(prints) == 3
    assert cfg().fingerprint() == cfg(preset="density").fingerprint()  # the default is the density preset
