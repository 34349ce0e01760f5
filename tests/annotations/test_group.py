"""The group annotation: grids, cell buckets and the group request."""

from __future__ import annotations

import pytest

import prompts
from annotations.group import GRID_SHAPES, bucket_groups, choose_grid, group_ask, group_sentence
from pipeline.contracts.categories import ISAID
from pipeline.contracts.config import TierRule
from pipeline.contracts.records import Group, PlannedObject
from tests.annotations.objects import CAR, SHIP, obj


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


# ---------------------------------------------------------------- requests


def test_group_prompt_uses_quantity_and_plural():
    g = Group(1, "small vehicles-1", 9, "small vehicle", "2x2", "top left", "top left", 14, "many", [1], {}, (0, 0, 1, 1), 1)
    ask = group_ask(g, prompts.load("group"))
    assert ask.prompt.startswith("Give a brief, single-sentence description of many small vehicles at the top left")


# ---------------------------------------------------------------- template sentence


def test_template_sentence_names_count_and_cell():
    g = Group(1, "small vehicles-1", CAR, "small vehicle", "2x2", "top left", "top left", 14, "many", [1], {}, (0, 0, 1, 1), 1)
    assert group_sentence(g, ISAID) == "The <p> small vehicles-1 </p> [SEG] are a group of 14 small vehicles at the top left."
    g.count, g.grid, g.cell, g.tag = 1, "1x1", "whole image", "ships-1"
    g.category_id = SHIP
    assert group_sentence(g, ISAID) == "The <p> ships-1 </p> [SEG] is a single ship across the image."
