"""The template drafter: captions in GeoPixelD's shape, every tag grounded exactly once, within the length cap,
the same on every run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from annotations import template_drafter
from annotations.merge import sentences
from pipeline.contracts.categories import ISAID
from pipeline.contracts.grounding import PHRASE_RE, ground, targets_of
from pipeline.contracts.records import Group, PatchPlan, PlannedObject
from tests.annotations.objects import CAR, COURT, LV, PLANE, SHIP, TANK, obj, patch_plan

REPO = Path(__file__).parents[2]


def instance(oid: int, cat: int, mark: int, k: int, pos: str, cx: float, cy: float, area: int = 3000) -> PlannedObject:
    o = obj(oid, cat, area, cx, cy)
    o.tier, o.mark, o.tag, o.position, o.size = "instance", mark, f"{ISAID[cat].display}-{k}", pos, "small"
    o.bbox = (cx - 20, cy - 20, 40, 40)
    return o


def group(gid: int, cat: int, k: int, members: list[PlannedObject], grid: str = "1x1", cell: str = "whole image",
          quantity: str = "many") -> Group:
    for m in members:
        m.group_id, m.size = gid, "tiny"
    c = ISAID[cat]
    return Group(gid, f"{c.plural}-{k}", cat, c.display, grid, cell, "center", len(members), quantity,
                 [m.object_id for m in members], {"size": [800, 800], "counts": ""}, (0, 0, 1, 1), 100 * len(members))


def plan_with(pid: str = "P0001_0_800_0_800") -> PatchPlan:
    """Three tennis courts at the bottom right, a plane at the top left, 14 cars at the top left, 8 ships down the
    right side."""
    courts = [instance(1 + i, COURT, 2 + i, 1 + i, "bottom right", 650 + 30 * i, 650) for i in range(3)]
    plane = instance(10, PLANE, 1, 1, "top left", 120, 120, 6000)
    cars = [obj(20 + i, CAR, 100, 100 + 10 * i, 150 + 5 * i) for i in range(14)]
    ships = [obj(40 + i, SHIP, 150, 700, 180 + 60 * i) for i in range(8)]
    p = patch_plan([plane, *courts, *cars, *ships],
                   [group(1, SHIP, 1, ships, quantity="several"), group(2, CAR, 1, cars, "2x2", "top left")])
    p.patch_id = pid
    return p


def tags_in(text: str) -> list[str]:
    return [m["text"] for m in PHRASE_RE.finditer(text)]


def planned_tags(plan: PatchPlan) -> list[str]:
    return [o.tag for o in plan.instances] + [g.tag for g in plan.groups]


def test_caption_has_geopixelds_shape_and_grounds_every_tag_once():
    plan = plan_with()
    d = template_drafter.draft(plan, ISAID)
    text = d["description"]
    g = ground(text, targets_of(plan))
    assert g.ok and not g.missing and sorted(tags_in(text)) == sorted(planned_tags(plan))
    assert text.count("[SEG]") == len(planned_tags(plan))
    parts = sentences(text)
    assert "<p>" not in parts[0] and "<p>" not in parts[-1]  # a summary first, a closing remark last
    tagged = [i for i, s in enumerate(parts) if "<p>" in s]
    first_group = min(i for i, s in enumerate(parts) if "ships-1" in s or "small vehicles-1" in s)
    assert all(i < first_group for i, s in enumerate(parts) if "court-" in s or "plane-1" in s)  # instances first
    assert tagged == list(range(tagged[0], tagged[-1] + 1))  # one block of phrase sentences in between
    # the three courts share one sentence, listed as GeoPixelD lists them
    assert ("<p> tennis court-1 </p> [SEG] , <p> tennis court-2 </p> [SEG] , and <p> tennis court-3 </p> [SEG]"
            in text)
    assert sum("court-" in s for s in parts) <= 2  # their sentence (and where the largest of them is)
    assert list(d["instances"]) == ["plane-1", "tennis court-1", "tennis court-2", "tennis court-3"]  # by mark
    assert list(d["groups"]) == ["ships-1", "small vehicles-1"]
    assert all(t.count(f"<p> {tag} </p> [SEG]") == 1 for tag, t in {**d["instances"], **d["groups"]}.items())
    assert (template_drafter.DRAFTER, template_drafter.VERSION) == ("template", "2")


def test_group_words_agree_with_their_members_and_their_number():
    d = template_drafter.draft(plan_with(), ISAID)
    ships = next(s for s in sentences(d["description"]) if "ships-1" in s)
    assert "along the right side of the image" in ships and "across the image" not in ships  # x = 700, y 180-600
    assert "eight" in ships and not re.search(r"ships-1 </p> \[SEG\] (is|was|has)\b", ships)
    cars = next(s for s in sentences(d["description"]) if "small vehicles-1" in s)
    assert "at the top left" in cars and "14" in cars


def test_a_group_of_one_reads_as_one_in_a_plural_tag():
    plane = obj(1, PLANE, 800, 700, 700)
    plan = patch_plan([plane], [group(1, PLANE, 1, [plane], quantity="a single")])
    text = template_drafter.draft(plan, ISAID)["description"]
    assert "The <p> planes-1 </p> [SEG] group at the bottom right holds only one plane." in text
    assert "is a single" not in text and "across the image" not in text


def crowded(pid: str = "P0009_0_800_0_800") -> PatchPlan:
    """20 marked instances of five categories all over the patch and 12 groups: the most the default rule makes."""
    cats = [COURT, PLANE, 5, 3, 15]
    words = ["top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right"]
    objects, groups, seen = [], [], {}
    for i in range(20):
        cat = cats[i % 5]
        seen[cat] = seen.get(cat, 0) + 1
        objects.append(instance(100 + i, cat, i + 1, seen[cat], words[i % 9], 80 + 35 * i, 60 + 33 * i))
    for j, cat in enumerate([CAR, CAR, CAR, CAR, LV, LV, SHIP, SHIP, TANK, TANK, 11, 11]):
        members = [obj(1000 + 50 * j + m, cat, 60, 40 + 60 * j, 40 + 12 * m) for m in range(40)]
        objects += members
        k = sum(g.category_id == cat for g in groups) + 1
        groups.append(group(j + 1, cat, k, members))
    plan = patch_plan(objects, groups)
    plan.patch_id = pid
    return plan


def test_a_crowded_patch_is_worded_tersely_within_the_cap_and_loses_no_phrase():
    plan = crowded()
    full = template_drafter.caption(plan, ISAID, 0)
    assert len(full) > template_drafter.MAX_CHARS  # the fullest wording would be too long
    text = template_drafter.draft(plan, ISAID)["description"]
    assert len(text) <= template_drafter.MAX_CHARS
    assert sorted(tags_in(text)) == sorted(planned_tags(plan)) and len(tags_in(text)) == 32
    g = ground(text, targets_of(plan))
    assert g.ok and not g.missing


def test_every_level_grounds_every_tag_exactly_once():
    for plan in (plan_with(), crowded()):
        for level in range(template_drafter.LEVELS):
            text = template_drafter.caption(plan, ISAID, level)
            g = ground(text, targets_of(plan))
            assert g.ok and not g.missing, (level, text)
            assert text.count("[SEG]") == len(planned_tags(plan))
        lengths = [len(template_drafter.caption(plan, ISAID, k)) for k in range(template_drafter.LEVELS)]
        assert lengths == sorted(lengths, reverse=True)  # terser at each level


def test_more_phrases_than_the_cap_holds_still_keeps_every_phrase():
    objs = [obj(i, CAR, 60, 10 + 7 * i, 400) for i in range(300)]
    groups = [group(k + 1, CAR, k + 1, objs[3 * k:3 * k + 3], quantity="three") for k in range(100)]
    plan = patch_plan(objs, groups)
    text = template_drafter.draft(plan, ISAID)["description"]
    assert len(text) > template_drafter.MAX_CHARS  # 100 phrases alone need more than the cap
    assert sorted(tags_in(text)) == sorted(g.tag for g in groups)


def test_patches_read_differently_but_a_plan_always_reads_the_same():
    texts = [template_drafter.draft(plan_with(f"P{k:04d}_0_800_0_800"), ISAID)["description"] for k in range(8)]
    assert len(set(texts)) > 2
    assert texts == [template_drafter.draft(plan_with(f"P{k:04d}_0_800_0_800"), ISAID)["description"] for k in range(8)]


def test_the_same_plan_gives_the_same_caption_in_another_process():
    """No `hash()` (salted per process) or `random` behind the wording: other hash seeds, the same caption."""
    code = ("import json; from annotations import template_drafter; from pipeline.contracts.categories import ISAID; "
            "from tests.annotations.test_template_drafter import plan_with; "
            "print(json.dumps([template_drafter.draft(plan_with(f'P{k:04d}_0_800_0_800'), ISAID)['description'] "
            "for k in range(4)]))")
    runs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout))
    here = [template_drafter.draft(plan_with(f"P{k:04d}_0_800_0_800"), ISAID)["description"] for k in range(4)]
    assert runs[0] == runs[1] == here


def test_the_largest_object_is_never_called_small_and_counts_agree():
    text = template_drafter.draft(plan_with(), ISAID)["description"]
    assert not re.search(r"largest object is an? (tiny|small) ", text)
    assert not re.search(r"\b1 of\b|\bone of the \w+ objects are\b|\bVisible are one\b", text)


@pytest.mark.parametrize("n", [1, 2, 5])
def test_a_patch_without_phrases_still_gets_a_summary_and_a_closing(n):
    cars = [obj(i, CAR, 100, 100 + 50 * i, 600) for i in range(n)]
    for c in cars:
        c.tier, c.drop_reason = "dropped", "fewer than 6 objects of its category to group"
    text = template_drafter.draft(patch_plan(cars), ISAID)["description"]
    assert "[SEG]" not in text and len(sentences(text)) >= 3
    assert ("one small vehicle" if n == 1 else f"{['', '', 'two', '', '', 'five'][n]} small vehicles") in text
