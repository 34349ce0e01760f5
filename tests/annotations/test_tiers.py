"""The instance/group rule and the grouping into grid cells."""

from __future__ import annotations

import numpy as np
import pytest

from annotations.plan import Clipped, filter_reason, plan_objects
from annotations.tiers import assign_tiers, bucket_groups, category_tier, choose_grid
from pipeline import masks
from pipeline.categories import ISAID
from pipeline.config import FilterConfig, PlanConfig, TierRule

PLANE, COURT, CAR, SHIP = 14, 4, 9, 1


def clipped(oid, cat, x, y, w, h, size=800):
    crop = np.ones((h, w), bool)
    from pipeline.records import PlannedObject

    obj = PlannedObject(object_id=oid, category_id=cat, category=ISAID[cat].display,
                        rle=masks.crop_to_rle(crop, x, y, size, size), bbox=(x, y, w, h), area=w * h,
                        centroid=(x + (w - 1) / 2, y + (h - 1) / 2), position="", size="", area_fraction=0.0,
                        orientation=None, angle=None, elongation=1.0, truncated=False)
    return Clipped(obj, crop, x, y)


def test_category_tier_defaults_and_explicit_lists():
    assert category_tier(ISAID[PLANE], TierRule()) == "instance"
    assert category_tier(ISAID[CAR], TierRule()) == "group"
    rule = TierRule(instance_categories=["ship"], group_categories=["plane"])
    assert category_tier(ISAID[SHIP], rule) == "instance" and category_tier(ISAID[PLANE], rule) == "group"


def test_area_density_and_mark_cap():
    objs = [clipped(1, PLANE, 0, 0, 50, 50).obj, clipped(2, PLANE, 100, 0, 20, 20).obj, clipped(3, CAR, 200, 0, 60, 60).obj]
    chosen = assign_tiers(objs, ISAID, TierRule(min_instance_area=900))
    assert [o.object_id for o in chosen] == [1]
    assert [o.tier for o in objs] == ["instance", "group", "group"]  # too small; group-tier category
    courts = [clipped(10 + i, COURT, i * 60, 300, 50, 50 + i).obj for i in range(5)]
    assert len(assign_tiers(courts, ISAID, TierRule(max_instances_per_category=4))) == 0  # too dense: grouped
    chosen = assign_tiers(courts, ISAID, TierRule(max_marks=2))
    assert [o.object_id for o in chosen] == [14, 13]  # the largest two


@pytest.mark.parametrize("n, grid", [(2, "1x1"), (3, "1x1"), (8, "1x2"), (30, "2x2"), (60, "3x3")])
def test_auto_grid_by_count(n, grid):
    cars = [clipped(i, CAR, 10 + (i * 97) % 760, 10 + (i * 13) % 200, 10, 20).obj for i in range(n)]
    assert choose_grid(cars, TierRule(), 800, 800) == grid


def test_auto_grid_follows_the_wider_spread():
    tall = [clipped(i, CAR, 400, 20 + i * 90, 10, 20).obj for i in range(8)]
    assert choose_grid(tall, TierRule(), 800, 800) == "2x1"
    assert choose_grid(tall, TierRule(group_grid="3x3"), 800, 800) == "3x3"


def test_buckets_by_cell_and_min_group_size():
    cars = [clipped(i, CAR, 10 + i * 20, 10, 10, 10).obj for i in range(5)] + [clipped(9, CAR, 700, 700, 10, 10).obj]
    buckets = bucket_groups(cars, TierRule(group_grid="2x2", min_group_size=2), 800, 800)
    assert [(b.cell, len(b.members)) for b in buckets] == [("top left", 5)]
    assert cars[-1].tier == "dropped" and "fewer than 2" in cars[-1].drop_reason


def test_plan_objects_tags_marks_and_union_masks():
    cfg = PlanConfig(source={"root": "x"}, output={"out": "y"}, tiers={"group_grid": "1x2"})
    items = [clipped(1, COURT, 50, 50, 60, 40), clipped(2, COURT, 200, 50, 80, 50), clipped(3, PLANE, 500, 500, 70, 70),
             clipped(4, CAR, 10, 700, 10, 20), clipped(5, CAR, 40, 700, 10, 20), clipped(6, CAR, 700, 700, 10, 20)]
    objects, groups, marks = plan_objects(items, ISAID, cfg, 800, 800)
    by_id = {o.object_id: o for o in objects}
    assert [(m.number, m.object_id) for m in marks] == [(1, 3), (2, 2), (3, 1)]  # largest first
    assert by_id[3].tag == "plane-1" and by_id[2].tag == "tennis court-1" and by_id[1].tag == "tennis court-2"
    for m in marks:
        assert masks.decode(by_id[m.object_id].rle)[m.y, m.x] == 1
    assert [(g.tag, g.cell, g.count, g.quantity) for g in groups] == [
        ("small vehicles-1", "left", 2, "two"), ("small vehicles-2", "right", 1, "a single")]
    assert groups[0].area == 400 and masks.area(groups[0].rle) == 400 and groups[0].member_ids == [4, 5]
    assert by_id[4].group_id == by_id[5].group_id == 1 and by_id[6].group_id == 2


def test_filter_reasons():
    objs = [clipped(1, CAR, 0, 0, 10, 10).obj, clipped(2, CAR, 100, 0, 10, 10).obj]
    assert filter_reason([], 0, FilterConfig(), 800, 800) == "empty"
    assert filter_reason(objs, 0, FilterConfig(), 800, 800) is None
    assert filter_reason(objs, 0, FilterConfig(min_objects=3), 800, 800) == "fewer than 3 objects"
    assert filter_reason(objs, 0, FilterConfig(max_objects=1), 800, 800) == "more than 1 objects"
    assert "cover less" in filter_reason(objs, 0, FilterConfig(min_object_fraction=0.01), 800, 800)
    assert filter_reason(objs, 0, FilterConfig(require_instance=True), 800, 800) == "no key instance"
    for o in objs:
        o.truncated = True
    assert filter_reason(objs, 1, FilterConfig(drop_all_truncated=True), 800, 800) == "every object is cut by the border"
