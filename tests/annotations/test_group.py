"""The group annotation: grids (the cells preset's by count, the density preset's), cell buckets, the group request
and the template sentence."""

from __future__ import annotations

import re

import pytest

import prompts
from annotations.group import (GRID_SHAPES, bucket_groups, choose_grid, density_grid, group_ask, group_place,
                               group_sentence)
from pipeline.contracts.categories import ISAID
from pipeline.contracts.config import TierRule
from pipeline.contracts.records import Group, PlannedObject
from tests.annotations.objects import CAR, LV, PLANE, SHIP, obj

CELLS = TierRule(preset="cells")  # the earlier rule, kept as a preset


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
def test_cells_grid_by_count(n, grid):
    assert choose_grid(_spread(n), CELLS, 800, 800) == grid


@pytest.mark.parametrize("n", [4, 12])
def test_cells_grid_follows_the_wider_spread(n):
    assert choose_grid(_spread(n, horizontal=True), CELLS, 800, 800) == "1x2"
    assert choose_grid(_spread(n, horizontal=False), CELLS, 800, 800) == "2x1"


def test_cells_grid_spread_is_relative_to_the_patch_sides():
    # x spread 300 of 1600 (0.19) vs y spread 100 of 400 (0.25): the vertical spread is wider
    members = [obj(i, CAR, 100, 100 + 75 * i, 100 + 25 * i) for i in range(5)]
    assert choose_grid(members, CELLS, 1600, 400) == "2x1"
    assert choose_grid(members, CELLS, 400, 1600) == "1x2"


@pytest.mark.parametrize("grid", ["1x1", "1x2", "2x1", "2x2", "3x3"])
@pytest.mark.parametrize("n", [1, 8, 60])
def test_fixed_grid_ignores_count(grid, n):
    assert choose_grid(_spread(n), TierRule(group_grid=grid), 800, 800) == grid
    assert choose_grid(_spread(n), TierRule(preset="cells", group_grid=grid), 800, 800) == grid


# ---------------------------------------------------------------- bucket_groups


def _cells(buckets):
    return [(b.category_id, b.grid, b.cell, [m.object_id for m in b.members]) for b in buckets]


def test_buckets_2x2_cell_words():
    cars = [obj(1, CAR, cx=100, cy=100), obj(2, CAR, cx=700, cy=100), obj(3, CAR, cx=100, cy=700),
            obj(4, CAR, cx=700, cy=700), obj(5, CAR, cx=399, cy=399)]
    buckets = bucket_groups(cars, TierRule(preset="cells", group_grid="2x2"), 800, 800)
    assert _cells(buckets) == [
        (CAR, "2x2", "top left", [1, 5]), (CAR, "2x2", "top right", [2]),
        (CAR, "2x2", "bottom left", [3]), (CAR, "2x2", "bottom right", [4]),
    ]


def test_buckets_1x2_and_2x1_cell_words():
    cars = [obj(1, CAR, 100, 399, 700), obj(2, CAR, 100, 400, 10)]
    assert [b.cell for b in bucket_groups(cars, TierRule(preset="cells", group_grid="1x2"), 800, 800)] == ["left", "right"]
    assert [b.cell for b in bucket_groups(cars, TierRule(preset="cells", group_grid="2x1"), 800, 800)] == ["top", "bottom"]
    (whole,) = bucket_groups(cars, TierRule(preset="cells", group_grid="1x1"), 800, 800)
    assert whole.cell == "whole image" and [m.object_id for m in whole.members] == [1, 2]


def test_buckets_3x3_cell_words():
    centres = [(x, y) for y in (100, 400, 700) for x in (100, 400, 700)]  # rows first
    ships = [obj(k, SHIP, 100, x, y) for k, (x, y) in enumerate(centres, start=1)]
    buckets = bucket_groups(ships, TierRule(preset="cells", group_grid="3x3"), 800, 800)
    assert [b.cell for b in buckets] == ["top left", "top", "top right", "left", "center", "right",
                                         "bottom left", "bottom", "bottom right"]
    assert [b.members[0].object_id for b in buckets] == list(range(1, 10))


def test_buckets_cells_grid_per_category():
    # 2 ships -> one whole-image group; 6 cars spread left/right -> 1x2
    ships = [obj(50, SHIP, 100, 100, 100), obj(51, SHIP, 100, 700, 700)]
    cars = [obj(i, CAR, 100, 100 + 20 * i, 400) for i in range(3)] + [obj(10 + i, CAR, 100, 600 + 20 * i, 420)
                                                                      for i in range(3)]
    buckets = bucket_groups(cars + ships, CELLS, 800, 800)
    assert _cells(buckets) == [
        (SHIP, "1x1", "whole image", [50, 51]),
        (CAR, "1x2", "left", [0, 1, 2]),
        (CAR, "1x2", "right", [10, 11, 12]),
    ]


def test_bucket_members_sorted_by_object_id():
    cars = [obj(9, CAR, 100, 10, 10), obj(2, CAR, 100, 20, 10), obj(5, CAR, 100, 30, 10)]
    (b,) = bucket_groups(cars, TierRule(preset="cells", group_grid="1x1"), 800, 800)
    assert [m.object_id for m in b.members] == [2, 5, 9]


def test_min_group_size_drops_small_cells_with_a_reason():
    cars = [obj(i, CAR, 100, 10 + i * 20, 10) for i in range(5)] + [obj(9, CAR, 100, 700, 700)]
    buckets = bucket_groups(cars, TierRule(preset="cells", group_grid="2x2", min_group_size=2), 800, 800)
    assert [(b.cell, len(b.members)) for b in buckets] == [("top left", 5)]
    assert cars[-1].tier == "dropped" and "fewer than 2" in cars[-1].drop_reason
    assert all(o.drop_reason is None for o in cars[:-1])
    # exactly min_group_size members is enough
    buckets = bucket_groups(cars[:2], TierRule(preset="cells", group_grid="1x1", min_group_size=2), 800, 800)
    assert len(buckets) == 1 and all(o.tier != "dropped" for o in cars[:2])


# ---------------------------------------------------------------- the density grid (default)


def _lot(n: int, x0: float, y0: float, w: float, h: float, cat: int = CAR, start: int = 0) -> list[PlannedObject]:
    """n objects on a lattice filling the box (x0, y0, w, h): a parking lot."""
    side = max(int(n**0.5), 1)
    return [obj(start + i, cat, 200, x0 + (i % side) * w / side, y0 + (i // side) * h / side) for i in range(n)]


def test_a_dense_parking_lot_is_one_group_not_nine():
    lot = _lot(200, 450, 450, 330, 330)  # 200 cars, all in the bottom right quarter
    assert choose_grid(lot, TierRule(), 800, 800) == "1x1"
    (b,) = bucket_groups(lot, TierRule(), 800, 800)
    assert len(b.members) == 200 and b.cell == "whole image"
    assert len(bucket_groups(_lot(200, 450, 450, 330, 330), CELLS, 800, 800)) >= 4  # the cells preset splits it


def test_a_lot_over_the_whole_patch_splits_into_at_most_four_crowds():
    lot = _lot(400, 20, 20, 760, 760)
    assert choose_grid(lot, TierRule(), 800, 800) == "2x2"
    buckets = bucket_groups(lot, TierRule(), 800, 800)
    assert len(buckets) == 4 and all(len(b.members) >= TierRule().cell_members for b in buckets)
    assert len(bucket_groups(_lot(400, 20, 20, 760, 760), CELLS, 800, 800)) == 9


def test_density_splits_only_where_every_part_is_a_crowd():
    # 60 at the top left, 10 at the bottom right: any split leaves a stray few, so one group
    lopsided = _lot(60, 20, 100, 300, 200) + _lot(10, 600, 600, 150, 100, start=100)
    assert density_grid(lopsided, 33, 800, 800) == "1x1"
    # 40 left, 40 right, one row: split left/right, not into quarters
    rows = _lot(40, 20, 380, 300, 40) + _lot(40, 480, 380, 300, 40, start=100)
    assert density_grid(rows, 33, 800, 800) == "1x2"
    assert density_grid(rows, 41, 800, 800) == "1x1"  # each half under cell_members
    column = [obj(i, CAR, 200, 400 + (i % 2) * 10, 20 + i * 9.5) for i in range(80)]
    assert density_grid(column, 33, 800, 800) == "2x1"


def test_density_never_groups_fewer_than_min_group_size_and_says_why():
    cars = [obj(i, CAR, 200, 100 + 40 * i, 700) for i in range(5)] + [obj(9, LV, 700, 700, 100)]
    buckets = bucket_groups(cars, TierRule(), 800, 800)  # 5 cars and 1 truck, min_group_size 6
    assert buckets == []
    assert all(o.tier == "dropped" and "fewer than 6" in o.drop_reason for o in cars)
    six = [obj(i, CAR, 200, 100 + 40 * i, 700) for i in range(6)]
    (b,) = bucket_groups(six, TierRule(), 800, 800)
    assert len(b.members) == 6 and all(o.tier != "dropped" for o in six)


def test_no_group_under_the_minimum_with_any_grid():
    cars = _lot(50, 20, 20, 300, 300) + [obj(900 + i, CAR, 200, 700, 700 + i) for i in range(3)]
    for grid in ("auto", "2x2", "3x3"):
        buckets = bucket_groups([*cars], TierRule(group_grid=grid), 800, 800)
        assert all(len(b.members) >= 6 for b in buckets), grid
        for o in cars:
            o.tier, o.drop_reason = "group", None


def test_grid_shapes_are_rows_by_cols():
    assert GRID_SHAPES["1x2"] == (1, 2) and GRID_SHAPES["2x1"] == (2, 1)


# ---------------------------------------------------------------- requests


def test_group_prompt_uses_quantity_and_plural():
    g = Group(1, "small vehicles-1", 9, "small vehicle", "2x2", "top left", "top left", 14, "many", [1], {}, (0, 0, 1, 1), 1)
    ask = group_ask(g, prompts.load("group"))
    assert ask.prompt.startswith("Give a brief, single-sentence description of many small vehicles at the top left")


# ---------------------------------------------------------------- where a group is


def _group(tag: str, cat: int, members: list[PlannedObject], grid: str = "1x1", cell: str = "whole image") -> Group:
    c = ISAID[cat]
    return Group(1, tag, cat, c.display, grid, cell, "center", len(members), "many" if len(members) > 10 else "a few",
                 [m.object_id for m in members], {}, (0, 0, 1, 1), 100 * len(members))


@pytest.mark.parametrize("members, words", [
    ([obj(1, CAR, 100, 700, 720)], "at the bottom right"),  # a group of one at the bottom right is not "across"
    ([obj(i, CAR, 100, 650 + i, 700) for i in range(8)], "at the bottom right"),
    ([obj(i, CAR, 100, 650 + i, 700) for i in range(8)] + [obj(9, CAR, 100, 100, 100)], "mostly at the bottom right"),
    ([obj(i, CAR, 100, 50 + 100 * i, 700) for i in range(8)], "along the bottom of the image"),
    ([obj(i, CAR, 100, 60, 50 + 100 * i) for i in range(8)], "along the left side of the image"),
    ([obj(i, CAR, 100, 100 + 200 * (i % 4), 100 + 600 * (i // 4)) for i in range(8)], "across the image"),
])
def test_group_place_agrees_with_where_its_members_are(members, words):
    assert group_place(_group("small vehicles-1", CAR, members), members, 800, 800) == words


def test_group_place_of_a_grid_cell_is_its_cell():
    members = [obj(i, CAR, 100, 100 + i, 100) for i in range(8)]
    g = _group("small vehicles-1", CAR, members, "2x2", "top left")
    assert group_place(g, members, 800, 800) == "at the top left"


# ---------------------------------------------------------------- template sentence


def test_template_sentence_is_plural_with_its_count_and_place():
    members = [obj(i, CAR, 100, 100 + 5 * i, 100 + 3 * i) for i in range(14)]
    g = _group("small vehicles-1", CAR, members, "2x2", "top left")
    for key in ("P0001", "P0002", "P0003", "P0004"):
        text = group_sentence(g, ISAID, members, 800, 800, key)
        assert text.count("<p> small vehicles-1 </p> [SEG]") == 1 and "at the top left" in text
        assert "14" in text and not re.search(r"\[SEG\] (is|was|has)\b", text)  # a plural tag takes plural words
        assert text == group_sentence(g, ISAID, members, 800, 800, key)  # the same plan, the same words
    assert len({group_sentence(g, ISAID, members, 800, 800, k) for k in ("P0001", "P0002", "P0003", "P0004")}) > 1


def test_a_group_of_one_is_not_called_a_single_plural_nor_across_the_image():
    plane = obj(1, PLANE, 3000, 700, 700)
    g = _group("planes-1", PLANE, [plane])
    text = group_sentence(g, ISAID, [plane], 800, 800, "P0001")
    assert text == "The <p> planes-1 </p> [SEG] group at the bottom right holds only one plane."


@pytest.mark.parametrize("level", [0, 1, 2])
def test_template_sentence_keeps_count_and_place_at_every_level(level):
    members = [obj(i, SHIP, 100, 600 + 5 * i, 100 + 3 * i) for i in range(9)]
    g = _group("ships-1", SHIP, members)
    text = group_sentence(g, ISAID, members, 800, 800, "P0007", level)
    assert "nine" in text and "at the top right" in text and text.count("[SEG]") == 1
