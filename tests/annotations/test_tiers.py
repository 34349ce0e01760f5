"""The instance/group rule and the grouping into grid cells."""

from __future__ import annotations

import pytest

from annotations.tiers import GRID_SHAPES, assign_tiers, bucket_groups, category_tier, choose_grid
from pipeline.contracts.categories import ISAID
from pipeline.contracts.config import TierRule
from pipeline.contracts.records import PlannedObject

SHIP, TANK, COURT, BRIDGE, LV, CAR, POOL, PLANE, HARBOR = 1, 2, 4, 7, 8, 9, 11, 14, 15


def obj(oid: int, cat: int, area: int = 2500, cx: float = 400.0, cy: float = 400.0) -> PlannedObject:
    """A planned object; only id, category, area and centroid matter to the tier rule."""
    return PlannedObject(
        object_id=oid, category_id=cat, category=ISAID[cat].display, rle={"size": [800, 800], "counts": ""},
        bbox=(cx, cy, 1.0, 1.0), area=area, centroid=(cx, cy), position="", size="", area_fraction=area / 640000,
        orientation=None, angle=None, elongation=1.0, truncated=False,
    )


# ---------------------------------------------------------------- category_tier


def test_category_tier_defaults():
    rule = TierRule()
    for cat in ISAID.categories:
        assert category_tier(cat, rule) == cat.tier
    assert category_tier(ISAID[PLANE], rule) == "instance"
    assert category_tier(ISAID[COURT], rule) == "instance"
    assert category_tier(ISAID[CAR], rule) == "group"
    assert category_tier(ISAID[SHIP], rule) == "group"


def test_category_tier_explicit_lists_override_defaults():
    rule = TierRule(instance_categories=["ship"], group_categories=["plane"])
    assert category_tier(ISAID[SHIP], rule) == "instance"
    assert category_tier(ISAID[PLANE], rule) == "group"
    # listed nowhere while both lists are given: group
    assert category_tier(ISAID[COURT], rule) == "group"
    assert category_tier(ISAID[CAR], rule) == "group"


def test_category_tier_matches_source_names_and_display_words():
    rule = TierRule(instance_categories=["Small_Vehicle", "storage tank"])
    assert category_tier(ISAID[CAR], rule) == "instance"  # source name
    assert category_tier(ISAID[TANK], rule) == "instance"  # display word
    assert category_tier(ISAID[SHIP], rule) == "group"  # unlisted: its default
    assert category_tier(ISAID[PLANE], rule) == "instance"  # unlisted: its default


def test_category_tier_only_a_group_list():
    rule = TierRule(group_categories=["Harbor", "bridge"])
    assert category_tier(ISAID[HARBOR], rule) == "group"
    assert category_tier(ISAID[BRIDGE], rule) == "group"
    assert category_tier(ISAID[PLANE], rule) == "instance"
    assert category_tier(ISAID[POOL], rule) == "group"


def test_category_tier_instance_list_wins_over_group_list():
    rule = TierRule(instance_categories=["plane"], group_categories=["plane"])
    assert category_tier(ISAID[PLANE], rule) == "instance"


# ---------------------------------------------------------------- assign_tiers


def test_area_threshold():
    objs = [obj(1, PLANE, 900), obj(2, PLANE, 899), obj(3, CAR, 5000)]
    chosen = assign_tiers(objs, ISAID, TierRule(min_instance_area=900))
    assert [o.object_id for o in chosen] == [1]  # 900 is enough, 899 is not
    assert [o.tier for o in objs] == ["instance", "group", "group"]  # the car is group-tier whatever its size
    chosen = assign_tiers(objs, ISAID, TierRule(min_instance_area=0))
    assert [o.object_id for o in chosen] == [1, 2]


def test_density_groups_every_object_of_a_crowded_category():
    courts = [obj(10 + i, COURT, 1000 + i) for i in range(5)]
    planes = [obj(20 + i, PLANE, 3000 + i) for i in range(4)]
    objs = courts + planes
    chosen = assign_tiers(objs, ISAID, TierRule(max_instances_per_category=4))
    assert {o.object_id for o in chosen} == {20, 21, 22, 23}  # 4 planes is allowed, 5 courts is not
    assert all(o.tier == "group" for o in courts)
    assert all(o.tier == "instance" for o in planes)
    chosen = assign_tiers(objs, ISAID, TierRule(max_instances_per_category=5))
    assert len(chosen) == 9


def test_density_counts_only_objects_big_enough_to_be_instances():
    big = [obj(i, COURT, 2000) for i in range(1, 4)]
    small = [obj(i, COURT, 100) for i in range(10, 20)]
    chosen = assign_tiers(big + small, ISAID, TierRule(max_instances_per_category=3, min_instance_area=900))
    assert [o.object_id for o in chosen] == [1, 2, 3]
    assert all(o.tier == "group" for o in small)


def test_max_marks_keeps_the_largest():
    objs = [obj(1, PLANE, 1000), obj(2, COURT, 5000), obj(3, PLANE, 3000), obj(4, BRIDGE, 4000), obj(5, HARBOR, 2000)]
    chosen = assign_tiers(objs, ISAID, TierRule(max_marks=3))
    assert [o.object_id for o in chosen] == [2, 4, 3]  # largest first
    assert {o.object_id for o in objs if o.tier == "instance"} == {2, 3, 4}
    assert {o.object_id for o in objs if o.tier == "group"} == {1, 5}


def test_max_marks_ties_broken_by_object_id():
    objs = [obj(7, PLANE, 2000), obj(3, PLANE, 2000), obj(5, COURT, 2000), obj(9, PLANE, 5000)]
    chosen = assign_tiers(objs, ISAID, TierRule(max_marks=3))
    assert [o.object_id for o in chosen] == [9, 3, 5]
    assert next(o for o in objs if o.object_id == 7).tier == "group"


def test_max_marks_zero_marks_nothing():
    objs = [obj(1, PLANE, 5000)]
    assert assign_tiers(objs, ISAID, TierRule(max_marks=0)) == []
    assert objs[0].tier == "group"


def test_assign_tiers_resets_previous_tiers():
    o = obj(1, PLANE, 5000)
    o.tier = "instance"
    assign_tiers([o], ISAID, TierRule(instance_categories=["ship"], group_categories=["plane"]))
    assert o.tier == "group"


# ---------------------------------------------------------------- choose_grid


def _spread(n: int, cat: int = CAR, horizontal: bool = True) -> list[PlannedObject]:
    """n objects along a horizontal (or vertical) line across the patch."""
    step = 700 / max(n - 1, 1)
    if horizontal:
        return [obj(i, cat, 100, 50 + i * step, 400 + (i % 2) * 10) for i in range(n)]
    return [obj(i, cat, 100, 400 + (i % 2) * 10, 50 + i * step) for i in range(n)]


@pytest.mark.parametrize(
    "n, grid",
    [(1, "1x1"), (2, "1x1"), (3, "1x1"), (4, "1x2"), (8, "1x2"), (12, "1x2"), (13, "2x2"), (30, "2x2"),
     (40, "2x2"), (41, "3x3"), (100, "3x3")],
)
def test_auto_grid_by_count(n, grid):
    assert choose_grid(_spread(n), TierRule(), 800, 800) == grid


@pytest.mark.parametrize("n", [4, 12])
def test_auto_grid_follows_the_wider_spread(n):
    assert choose_grid(_spread(n, horizontal=True), TierRule(), 800, 800) == "1x2"
    assert choose_grid(_spread(n, horizontal=False), TierRule(), 800, 800) == "2x1"


def test_auto_grid_spread_is_relative_to_the_patch_sides():
    # x spread 300 of 1600 (0.19) vs y spread 100 of 400 (0.25): the vertical spread is wider
    members = [obj(i, CAR, 100, 100 + 75 * i, 100 + 25 * i) for i in range(5)]
    assert choose_grid(members, TierRule(), 1600, 400) == "2x1"
    assert choose_grid(members, TierRule(), 400, 1600) == "1x2"


@pytest.mark.parametrize("grid", ["1x1", "1x2", "2x1", "2x2", "3x3"])
@pytest.mark.parametrize("n", [1, 8, 60])
def test_fixed_grid_ignores_count(grid, n):
    assert choose_grid(_spread(n), TierRule(group_grid=grid), 800, 800) == grid


# ---------------------------------------------------------------- bucket_groups


def _cells(buckets):
    return [(b.category_id, b.grid, b.cell, [m.object_id for m in b.members]) for b in buckets]


def test_buckets_2x2_cell_words():
    cars = [obj(1, CAR, cx=100, cy=100), obj(2, CAR, cx=700, cy=100), obj(3, CAR, cx=100, cy=700),
            obj(4, CAR, cx=700, cy=700), obj(5, CAR, cx=399, cy=399)]
    buckets = bucket_groups(cars, TierRule(group_grid="2x2"), 800, 800)
    assert _cells(buckets) == [
        (CAR, "2x2", "top left", [1, 5]), (CAR, "2x2", "top right", [2]),
        (CAR, "2x2", "bottom left", [3]), (CAR, "2x2", "bottom right", [4]),
    ]


def test_buckets_1x2_and_2x1_cell_words():
    cars = [obj(1, CAR, 100, 399, 700), obj(2, CAR, 100, 400, 10)]
    assert [b.cell for b in bucket_groups(cars, TierRule(group_grid="1x2"), 800, 800)] == ["left", "right"]
    assert [b.cell for b in bucket_groups(cars, TierRule(group_grid="2x1"), 800, 800)] == ["top", "bottom"]
    (whole,) = bucket_groups(cars, TierRule(group_grid="1x1"), 800, 800)
    assert whole.cell == "whole image" and [m.object_id for m in whole.members] == [1, 2]


def test_buckets_3x3_cell_words():
    centres = [(x, y) for y in (100, 400, 700) for x in (100, 400, 700)]  # rows first
    ships = [obj(k, SHIP, 100, x, y) for k, (x, y) in enumerate(centres, start=1)]
    buckets = bucket_groups(ships, TierRule(group_grid="3x3"), 800, 800)
    assert [b.cell for b in buckets] == ["top left", "top", "top right", "left", "center", "right",
                                         "bottom left", "bottom", "bottom right"]
    assert [b.members[0].object_id for b in buckets] == list(range(1, 10))


def test_buckets_auto_grid_per_category():
    # 2 ships -> one whole-image group; 6 cars spread left/right -> 1x2
    ships = [obj(50, SHIP, 100, 100, 100), obj(51, SHIP, 100, 700, 700)]
    cars = [obj(i, CAR, 100, 100 + 20 * i, 400) for i in range(3)] + [obj(10 + i, CAR, 100, 600 + 20 * i, 420)
                                                                      for i in range(3)]
    buckets = bucket_groups(cars + ships, TierRule(), 800, 800)
    assert _cells(buckets) == [
        (SHIP, "1x1", "whole image", [50, 51]),
        (CAR, "1x2", "left", [0, 1, 2]),
        (CAR, "1x2", "right", [10, 11, 12]),
    ]


def test_bucket_members_sorted_by_object_id():
    cars = [obj(9, CAR, 100, 10, 10), obj(2, CAR, 100, 20, 10), obj(5, CAR, 100, 30, 10)]
    (b,) = bucket_groups(cars, TierRule(group_grid="1x1"), 800, 800)
    assert [m.object_id for m in b.members] == [2, 5, 9]


def test_min_group_size_drops_small_cells_with_a_reason():
    cars = [obj(i, CAR, 100, 10 + i * 20, 10) for i in range(5)] + [obj(9, CAR, 100, 700, 700)]
    buckets = bucket_groups(cars, TierRule(group_grid="2x2", min_group_size=2), 800, 800)
    assert [(b.cell, len(b.members)) for b in buckets] == [("top left", 5)]
    assert cars[-1].tier == "dropped" and "fewer than 2" in cars[-1].drop_reason
    assert all(o.drop_reason is None for o in cars[:-1])
    # exactly min_group_size members is enough
    buckets = bucket_groups(cars[:2], TierRule(group_grid="1x1", min_group_size=2), 800, 800)
    assert len(buckets) == 1 and all(o.tier != "dropped" for o in cars[:2])


def test_grid_shapes_are_rows_by_cols():
    assert GRID_SHAPES["1x2"] == (1, 2) and GRID_SHAPES["2x1"] == (2, 1)
