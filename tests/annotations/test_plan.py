"""One patch's plan: marks, tags, groups and the patch filters."""

from __future__ import annotations

import numpy as np
import pytest

from annotations.plan import Clipped, filter_reason, plan_objects
from pipeline.contracts import masks
from pipeline.contracts.categories import ISAID
from pipeline.contracts.config import FilterConfig, PlanConfig
from pipeline.contracts.records import PlannedObject

SHIP, TANK, COURT, CAR, PLANE = 1, 2, 4, 9, 14
SIZE = 800


def cfg(**kw) -> PlanConfig:
    return PlanConfig(source={"root": "x"}, output={"out": "y"}, **kw)


def cells(**tiers) -> PlanConfig:
    """The earlier rule (the cells preset), which these tests of marks, tags and grids were written against."""
    return cfg(tiers={"preset": "cells", **tiers})


def clip(oid: int, cat: int, crop: np.ndarray, x0: int, y0: int, truncated: bool = False) -> Clipped:
    """A clipped object whose fields are computed here from its crop (pixel-centre centroid)."""
    crop = np.asarray(crop, bool)
    ys, xs = np.nonzero(crop)
    obj = PlannedObject(
        object_id=oid, category_id=cat, category=ISAID[cat].display,
        rle=masks.crop_to_rle(crop, x0, y0, SIZE, SIZE), bbox=(float(x0), float(y0), float(crop.shape[1]), float(crop.shape[0])),
        area=int(crop.sum()), centroid=(x0 + float(xs.mean()), y0 + float(ys.mean())), position="", size="",
        area_fraction=crop.sum() / SIZE**2, orientation=None, angle=None, elongation=1.0, truncated=truncated,
    )
    return Clipped(obj, crop, x0, y0)


def rect(oid, cat, x0, y0, w, h, **kw) -> Clipped:
    return clip(oid, cat, np.ones((h, w), bool), x0, y0, **kw)


def l_shape(oid, cat, x0, y0) -> Clipped:
    """A 60 x 60 L with 10 px arms (1100 px); its centroid (about (18, 41) in the crop) is off the object."""
    crop = np.zeros((60, 60), bool)
    crop[:, :10] = True
    crop[50:, :] = True
    return clip(oid, cat, crop, x0, y0)


# ---------------------------------------------------------------- instances: marks and tags


def test_marks_numbered_largest_first_and_tags_counted_per_category():
    items = [
        rect(1, COURT, 50, 50, 60, 40),  # 2400
        rect(2, COURT, 200, 50, 80, 50),  # 4000
        rect(3, PLANE, 500, 500, 70, 70),  # 4900
        l_shape(4, PLANE, 100, 600),  # 1100
    ]
    objects, groups, marks = plan_objects(items, ISAID, cells(), SIZE, SIZE)
    by_id = {o.object_id: o for o in objects}
    assert [(m.number, m.object_id) for m in marks] == [(1, 3), (2, 2), (3, 1), (4, 4)]
    assert [by_id[i].mark for i in (1, 2, 3, 4)] == [3, 2, 1, 4]
    assert by_id[3].tag == "plane-1" and by_id[4].tag == "plane-2"
    assert by_id[2].tag == "tennis court-1" and by_id[1].tag == "tennis court-2"
    assert all(o.tier == "instance" for o in objects) and groups == []


def test_mark_centres_lie_on_their_objects_pixels():
    items = [l_shape(1, PLANE, 100, 100), l_shape(2, PLANE, 300, 100), rect(3, COURT, 150, 400, 100, 12),
             l_shape(4, COURT, 500, 500)]
    cx, cy = items[0].obj.centroid
    assert not masks.decode(items[0].obj.rle)[round(cy), round(cx)]  # the L's centroid is off the object
    objects, _, marks = plan_objects(items, ISAID, cells(), SIZE, SIZE)
    by_id = {o.object_id: o for o in objects}
    assert len(marks) == 4
    for m in marks:
        assert masks.decode(by_id[m.object_id].rle)[m.y, m.x] == 1
        for other in objects:
            if other.object_id != m.object_id:
                assert masks.decode(other.rle)[m.y, m.x] == 0


def test_unplaceable_mark_joins_the_group_tier_and_numbers_stay_consecutive():
    items = [
        rect(1, COURT, 300, 300, 100, 100),  # 10000 px; its mark goes near (350, 350)
        rect(2, COURT, 330, 330, 40, 40),  # 1600 px, every pixel within 24 px of that mark: no room
        rect(3, PLANE, 600, 100, 35, 35),  # 1225 px
    ]
    objects, groups, marks = plan_objects(items, ISAID, cells(), SIZE, SIZE)
    by_id = {o.object_id: o for o in objects}
    assert [(m.number, m.object_id) for m in marks] == [(1, 1), (2, 3)]  # not 1 and 3
    assert by_id[2].tier == "group" and by_id[2].mark is None and by_id[2].tag is None
    assert by_id[1].tag == "tennis court-1" and by_id[3].tag == "plane-1"
    assert [(g.tag, g.member_ids) for g in groups] == [("tennis courts-1", [2])]
    assert by_id[2].group_id == groups[0].group_id


def test_max_marks_from_the_config():
    items = [rect(i, PLANE, 100 * i, 100, 40, 30 + i) for i in range(1, 6)]
    objects, groups, marks = plan_objects(items, ISAID, cells(max_marks=2), SIZE, SIZE)
    assert [m.object_id for m in marks] == [5, 4]
    assert sorted(o.object_id for o in objects if o.tier == "group") == [1, 2, 3]
    (g,) = groups
    assert g.tag == "planes-1" and g.member_ids == [1, 2, 3] and g.count == 3 and g.quantity == "three"


def test_small_instance_tier_objects_become_groups():
    items = [rect(1, PLANE, 100, 100, 29, 31), rect(2, PLANE, 200, 100, 30, 30)]  # 899 and 900 px
    objects, groups, marks = plan_objects(items, ISAID, cells(), SIZE, SIZE)
    assert [m.object_id for m in marks] == [2]
    assert [(g.tag, g.member_ids, g.quantity) for g in groups] == [("planes-1", [1], "a single")]


# ---------------------------------------------------------------- groups


def test_groups_tags_cells_counts_and_union_masks():
    items = [
        rect(1, COURT, 300, 300, 60, 40),
        rect(4, CAR, 10, 700, 10, 20), rect(5, CAR, 40, 700, 10, 20),
        rect(6, CAR, 700, 700, 10, 20), rect(7, CAR, 720, 650, 10, 20), rect(8, CAR, 740, 600, 10, 20),
        rect(20, SHIP, 100, 100, 30, 10), rect(21, SHIP, 100, 150, 30, 10),
    ]
    objects, groups, marks = plan_objects(items, ISAID, cells(), SIZE, SIZE)
    by_id = {o.object_id: o for o in objects}
    assert [m.object_id for m in marks] == [1]
    # categories in id order (ship 1 before small vehicle 9); 5 cars spread mostly left-right -> 1x2
    assert [(g.tag, g.grid, g.cell, g.count, g.quantity, g.member_ids) for g in groups] == [
        ("ships-1", "1x1", "whole image", 2, "two", [20, 21]),
        ("small vehicles-1", "1x2", "left", 2, "two", [4, 5]),
        ("small vehicles-2", "1x2", "right", 3, "three", [6, 7, 8]),
    ]
    assert [g.group_id for g in groups] == [1, 2, 3]
    assert [g.category for g in groups] == ["ship", "small vehicle", "small vehicle"]
    for g in groups:
        members = [by_id[i] for i in g.member_ids]
        assert all(m.group_id == g.group_id and m.tier == "group" for m in members)
        union = np.zeros((SIZE, SIZE), np.uint8)
        for m in members:
            union |= masks.decode(m.rle)
        assert (masks.decode(g.rle) == union).all()
        assert g.area == sum(m.area for m in members)  # disjoint members
        assert masks.area(g.rle) == g.area
    assert groups[1].bbox == (10.0, 700.0, 40.0, 20.0)
    assert groups[1].position == "bottom left" and groups[2].position == "bottom right"
    assert groups[0].position == "top left"  # ships around (114.5, 129.5)
    assert by_id[1].group_id is None


def test_group_of_overlapping_members_counts_shared_pixels_once():
    items = [rect(1, CAR, 100, 100, 20, 20), rect(2, CAR, 110, 100, 20, 20)]  # 10 x 20 shared
    _, groups, _ = plan_objects(items, ISAID, cells(), SIZE, SIZE)
    (g,) = groups
    assert g.area == 400 + 400 - 200 and masks.area(g.rle) == 600
    assert g.bbox == (100.0, 100.0, 30.0, 20.0) and g.count == 2


def test_group_position_is_the_area_weighted_centre():
    # a big car top left and a tiny one bottom right: the union's centre stays top left
    items = [rect(1, CAR, 10, 10, 200, 200), rect(2, CAR, 780, 780, 5, 5)]
    _, groups, _ = plan_objects(items, ISAID, cells(), SIZE, SIZE)
    assert groups[0].cell == "whole image" and groups[0].position == "top left"


def test_min_group_size_drops_lonely_members_in_the_plan():
    items = [rect(i, CAR, 10 + 20 * i, 10, 10, 10) for i in range(1, 4)] + [rect(9, CAR, 700, 700, 10, 10)]
    objects, groups, _ = plan_objects(items, ISAID, cells(group_grid="2x2", min_group_size=2), SIZE, SIZE)
    by_id = {o.object_id: o for o in objects}
    assert [(g.cell, g.member_ids) for g in groups] == [("top left", [1, 2, 3])]
    assert by_id[9].tier == "dropped" and by_id[9].group_id is None and by_id[9].drop_reason


def test_many_members_use_finer_grids():
    cars = [rect(i, CAR, 20 + (i % 10) * 75, 20 + (i // 10) * 75, 8, 8) for i in range(100)]  # 10 x 10 lattice
    _, groups, _ = plan_objects(cars, ISAID, cells(), SIZE, SIZE)
    assert {g.grid for g in groups} == {"3x3"}
    assert sum(g.count for g in groups) == 100
    assert [g.tag for g in groups] == [f"small vehicles-{j}" for j in range(1, len(groups) + 1)]
    assert len(groups) == 9


# ---------------------------------------------------------------- filter_reason


def _objs(n=2, truncated=False):
    return [rect(i, CAR, 100 * i, 0, 10, 10, truncated=truncated).obj for i in range(n)]


def test_filter_empty_and_counts():
    assert filter_reason([], 0, FilterConfig(), SIZE, SIZE) == "empty"
    assert filter_reason([], 0, FilterConfig(min_objects=1, max_objects=5), SIZE, SIZE) == "empty"
    objs = _objs(2)
    assert filter_reason(objs, 0, FilterConfig(), SIZE, SIZE) is None
    assert filter_reason(objs, 0, FilterConfig(min_objects=2), SIZE, SIZE) is None
    assert filter_reason(objs, 0, FilterConfig(min_objects=3), SIZE, SIZE) == "fewer than 3 objects"
    assert filter_reason(objs, 0, FilterConfig(max_objects=2), SIZE, SIZE) is None
    assert filter_reason(objs, 0, FilterConfig(max_objects=1), SIZE, SIZE) == "more than 1 objects"


def test_filter_min_object_fraction():
    objs = _objs(2)  # 200 px of a 100 x 100 patch: 0.02
    assert filter_reason(objs, 0, FilterConfig(min_object_fraction=0.02), 100, 100) is None
    reason = filter_reason(objs, 0, FilterConfig(min_object_fraction=0.021), 100, 100)
    assert reason is not None and "cover less" in reason
    assert filter_reason(objs, 0, FilterConfig(min_object_fraction=0.0001), SIZE, SIZE) is None  # 200/640000
    assert "cover less" in filter_reason(objs, 0, FilterConfig(min_object_fraction=0.001), SIZE, SIZE)


def test_filter_require_instance():
    objs = _objs(2)
    assert filter_reason(objs, 0, FilterConfig(require_instance=True), SIZE, SIZE) == "no key instance"
    assert filter_reason(objs, 1, FilterConfig(require_instance=True), SIZE, SIZE) is None
    assert filter_reason(objs, 0, FilterConfig(require_instance=False), SIZE, SIZE) is None


def test_filter_drop_all_truncated():
    objs = _objs(2, truncated=True)
    assert filter_reason(objs, 1, FilterConfig(drop_all_truncated=True), SIZE, SIZE) == "every object is cut by the border"
    assert filter_reason(objs, 1, FilterConfig(drop_all_truncated=False), SIZE, SIZE) is None
    objs[0].truncated = False
    assert filter_reason(objs, 1, FilterConfig(drop_all_truncated=True), SIZE, SIZE) is None


@pytest.mark.parametrize(
    "filters, reason",
    [
        ({"min_objects": 3, "require_instance": True}, "fewer than 3 objects"),  # counts are checked first
        ({"max_objects": 1, "drop_all_truncated": True}, "more than 1 objects"),
    ],
)
def test_filter_first_failing_rule_is_reported(filters, reason):
    assert filter_reason(_objs(2, truncated=True), 0, FilterConfig(**filters), SIZE, SIZE) == reason


# ---------------------------------------------------------------- the density rule (default)


def test_default_rule_plans_a_parking_lot_as_one_group_and_says_what_it_dropped():
    lot = [rect(100 + i, CAR, 420 + (i % 12) * 30, 430 + (i // 12) * 30, 10, 20) for i in range(120)]
    items = lot + [rect(300, CAR, 20, 20, 10, 20),  # a lone car far away joins the lot's group (one per category)
                   rect(320, SHIP, 700, 40, 60, 25), rect(321, SHIP, 100, 700, 12, 6)]  # a big ship, a small boat
    objects, groups, marks = plan_objects(items, ISAID, cfg(), SIZE, SIZE)
    by_id = {o.object_id: o for o in objects}
    (g,) = groups
    assert (g.tag, g.grid, g.cell, g.count) == ("small vehicles-1", "1x1", "whole image", 121)
    assert [m.object_id for m in marks] == [320] and by_id[320].tag == "ship-1"  # too few ships to group
    assert by_id[321].tier == "dropped" and "fewer than 6" in by_id[321].drop_reason  # too small to mark
    assert sum(o.tier == "dropped" for o in objects) == 1
    _, old_groups, _ = plan_objects(items, ISAID, cells(), SIZE, SIZE)
    assert len([x for x in old_groups if x.category_id == CAR]) == 5  # the cells preset: five car groups


def test_default_rule_never_makes_a_group_under_min_group_size():
    items = [rect(i, CAR, 10 + 60 * (i % 12), 10 + 70 * (i // 12), 8, 16) for i in range(100)]
    items += [rect(200 + i, SHIP, 30 + 100 * i, 760, 20, 8) for i in range(5)]  # five ships: too few
    items += [rect(300 + i, TANK, 30 + 100 * i, 700, 12, 12) for i in range(6)]  # six tanks: a group
    for tiers in ({}, {"group_grid": "2x2"}, {"group_grid": "3x3"}, {"min_group_size": 9}):
        objects, groups, _ = plan_objects(items, ISAID, cfg(tiers=tiers), SIZE, SIZE)
        floor = tiers.get("min_group_size", 6)
        assert groups and all(g.count >= floor for g in groups), tiers
        grouped = {i for g in groups for i in g.member_ids}
        assert all(o.tier == "dropped" and o.drop_reason for o in objects if o.tier != "instance" and
                   o.object_id not in grouped)
        for c in items:
            c.obj.tier, c.obj.drop_reason, c.obj.group_id = "group", None, None
