"""Spatial prior words and the template's English (agreement, lists, per-patch word choice), checked by hand."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from annotations.priors import (
    POSITION_WORDS,
    a,
    capital,
    counted,
    listing,
    number,
    percent,
    pick,
    sized,
    verb,
    centroid,
    describe,
    grid_cell,
    orientation,
    orientation_word,
    position_word,
    quantity_word,
    word_for,
)
from pipeline.contracts.config import PriorConfig, TierRule

# ---------------------------------------------------------------- positions


@pytest.mark.parametrize(
    "x, y, word",
    [
        (10, 10, "top left"), (400, 10, "top"), (790, 10, "top right"),
        (10, 400, "left"), (400, 400, "center"), (790, 400, "right"),
        (10, 790, "bottom left"), (400, 790, "bottom"), (790, 790, "bottom right"),
        # borders at 800 / 3 = 266.67 and 533.33
        (266, 10, "top left"), (267, 10, "top"), (533, 10, "top"), (534, 10, "top right"),
        (10, 266, "top left"), (10, 267, "left"), (10, 533, "left"), (10, 534, "bottom left"),
        (266.6, 266.6, "top left"), (266.7, 266.7, "center"), (533.3, 533.3, "center"), (533.4, 533.4, "bottom right"),
        # the image's own edges and beyond stay in the outer cells
        (0, 0, "top left"), (799.9, 799.9, "bottom right"), (800, 800, "bottom right"),
        (-5, 400, "left"), (400, 1000, "bottom"),
    ],
)
def test_position_words_square_patch(x, y, word):
    assert position_word(x, y, 800, 800) == word


@pytest.mark.parametrize(
    "x, y, word",
    [
        # 900 wide, 300 high: column borders at 300 and 600, row borders at 100 and 200
        (299.9, 99.9, "top left"), (300, 100, "center"), (599.9, 199.9, "center"), (600, 200, "bottom right"),
        (450, 50, "top"), (450, 250, "bottom"), (150, 150, "left"), (750, 150, "right"),
    ],
)
def test_position_words_non_square_patch(x, y, word):
    assert position_word(x, y, 900, 300) == word


def test_every_cell_has_its_word():
    seen = set()
    for r in range(3):
        for c in range(3):
            x, y = (c + 0.5) * 100, (r + 0.5) * 60  # 300 x 180 patch, cell centres
            assert grid_cell(x, y, 300, 180, 3, 3) == (r, c)
            seen.add(position_word(x, y, 300, 180))
    assert seen == {w for row in POSITION_WORDS for w in row} and len(seen) == 9


def test_grid_cell_other_grids():
    assert grid_cell(399, 10, 800, 800, 2, 1) == (0, 0)  # 1 row, 2 cols
    assert grid_cell(400, 10, 800, 800, 2, 1) == (0, 1)
    assert grid_cell(10, 399, 800, 800, 1, 2) == (0, 0)  # 2 rows, 1 col
    assert grid_cell(10, 400, 800, 800, 1, 2) == (1, 0)
    assert grid_cell(600, 100, 800, 800, 2, 2) == (0, 1)


# ---------------------------------------------------------------- word_for / quantity


@pytest.mark.parametrize(
    "frac, word",
    [
        (0.0, "tiny"), (0.0005, "tiny"), (0.001, "tiny"),  # a bound belongs to its own word
        (0.0011, "small"), (0.01, "small"), (0.0101, "medium"), (0.05, "medium"), (0.051, "large"),
        (0.2, "large"), (0.21, "very large"), (1.0, "very large"), (1.5, "very large"),  # beyond the last bound
    ],
)
def test_size_words(frac, word):
    assert word_for(frac, PriorConfig().size_words) == word


def test_word_for_custom_bounds():
    bounds = [(10.0, "low"), (20.0, "mid")]
    assert [word_for(v, bounds) for v in (-1, 10, 10.5, 20, 99)] == ["low", "low", "mid", "mid", "mid"]


@pytest.mark.parametrize(
    "n, word",
    [(1, "a single"), (2, "two"), (3, "three"), (4, "a few"), (5, "a few"), (6, "several"), (10, "several"),
     (11, "many"), (30, "many"), (31, "numerous"), (100, "numerous"), (101, "more than a hundred"),
     (10**6, "more than a hundred")],
)
def test_quantity_words(n, word):
    assert quantity_word(n, TierRule().quantity_words) == word


def test_quantity_words_custom():
    words = [(1, "one"), (4, "some")]
    assert [quantity_word(n, words) for n in (1, 2, 4, 5)] == ["one", "some", "some", "some"]


# ---------------------------------------------------------------- orientation


@pytest.mark.parametrize(
    "axis, word",
    [
        (0, "horizontal"), (22.4, "horizontal"), (179.9, "horizontal"), (157.5, "horizontal"), (180, "horizontal"),
        (22.5, "diagonal from top left to bottom right"), (45, "diagonal from top left to bottom right"),
        (67.4, "diagonal from top left to bottom right"),
        (67.5, "vertical"), (90, "vertical"), (112.4, "vertical"),
        (112.5, "diagonal from bottom left to top right"), (135, "diagonal from bottom left to top right"),
        (157.4, "diagonal from bottom left to top right"),
        (-45, "diagonal from bottom left to top right"),  # -45 == 135 (mod 180)
        (225, "diagonal from top left to bottom right"),  # 225 == 45
    ],
)
def test_orientation_word_thresholds(axis, word):
    assert orientation_word(axis) == word


def _segment(p, q, thickness=3, size=120) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    cv2.line(m, p, q, 1, thickness)
    return m.astype(bool)


def _axis_deg(p, q) -> float:
    """Direction of p -> q in image coordinates (y down), folded into [0, 180)."""
    return math.degrees(math.atan2(q[1] - p[1], q[0] - p[0])) % 180.0


@pytest.mark.parametrize(
    "p, q, word",
    [
        ((5, 60), (114, 60), "horizontal"),
        ((60, 5), (60, 114), "vertical"),
        ((5, 5), (110, 110), "diagonal from top left to bottom right"),  # y grows down: 45 degrees
        ((5, 110), (110, 5), "diagonal from bottom left to top right"),  # 135 degrees
        ((5, 5), (110, 60), "diagonal from top left to bottom right"),  # ~28 degrees
        ((5, 5), (60, 110), "diagonal from top left to bottom right"),  # ~62 degrees
        ((5, 110), (110, 60), "diagonal from bottom left to top right"),  # ~155 degrees
        ((5, 110), (60, 5), "diagonal from bottom left to top right"),  # ~118 degrees
        ((5, 50), (110, 70), "horizontal"),  # ~11 degrees
        ((50, 5), (70, 110), "vertical"),  # ~79 degrees
    ],
)
def test_orientation_of_drawn_segments(p, q, word):
    angle, elong, got = orientation(_segment(p, q), 2.0)
    assert got == word
    expected = _axis_deg(p, q)
    diff = abs(angle - expected) % 180.0
    assert min(diff, 180.0 - diff) < 3.0
    assert 0.0 <= angle < 180.0
    assert elong > 10


def test_orientation_same_word_either_direction():
    a = orientation(_segment((5, 5), (110, 110)), 2.0)
    b = orientation(_segment((110, 110), (5, 5)), 2.0)
    assert a[2] == b[2] == "diagonal from top left to bottom right"


@pytest.mark.parametrize(
    "h, w, elong, word",
    [
        (10, 20, 2.0, "horizontal"),  # pixel extents 20 x 10: exactly the threshold gets a word
        (10, 19, 1.9, None),
        (20, 10, 2.0, "vertical"),
        (19, 10, 1.9, None),
        (30, 30, 1.0, None),
        (1, 5, 5.0, "horizontal"),
        (1, 1, 1.0, None),
    ],
)
def test_orientation_elongation_of_rectangles(h, w, elong, word):
    angle, got_elong, got = orientation(np.ones((h, w), bool), 2.0)
    assert got_elong == pytest.approx(elong)
    assert got == word


def test_orientation_threshold_is_a_parameter():
    bar = np.ones((10, 25), bool)  # elongation 2.5
    assert orientation(bar, 2.0)[2] == "horizontal"
    assert orientation(bar, 2.5)[2] == "horizontal"
    assert orientation(bar, 2.6)[2] is None


def test_compact_shapes_have_no_orientation_word():
    disk = np.zeros((41, 41), np.uint8)
    cv2.circle(disk, (20, 20), 18, 1, -1)
    angle, elong, word = orientation(disk.astype(bool), 2.0)
    assert word is None and elong < 1.2
    square = np.ones((30, 30), bool)
    assert orientation(square, 2.0)[2] is None


def test_orientation_of_an_empty_crop():
    assert orientation(np.zeros((5, 5), bool), 2.0) == (None, 1.0, None)


# ---------------------------------------------------------------- centroid / describe


def test_centroid_of_an_l_shape_by_hand():
    crop = np.zeros((4, 4), bool)
    crop[:, 0] = True  # 4 pixels at x=0, y=0..3
    crop[3, 1:] = True  # 3 pixels at y=3, x=1..3
    cx, cy = centroid(crop, 100, 200)
    assert cx == pytest.approx(100 + (0 * 4 + 1 + 2 + 3) / 7)
    assert cy == pytest.approx(200 + (0 + 1 + 2 + 3 + 3 * 3) / 7)


def test_describe_crop_in_patch_coordinates():
    crop = np.ones((10, 40), bool)
    d = describe(crop, 700, 20, 800, 800, PriorConfig().size_words, 2.0)
    assert d["area"] == 400
    assert d["centroid"] == (719.5, 24.5)  # pixel centres: 700 + 39 / 2, 20 + 9 / 2
    assert d["position"] == "top right"
    assert d["area_fraction"] == pytest.approx(400 / 640000)
    assert d["size"] == "tiny"  # 0.000625 <= 0.001
    assert d["orientation"] == "horizontal" and d["elongation"] == pytest.approx(4.0)
    assert d["angle"] is not None and min(d["angle"], 180 - d["angle"]) < 1.0


def test_describe_compact_object_in_the_centre():
    crop = np.ones((100, 90), bool)  # 9000 px of 640000 = 0.014 -> medium
    d = describe(crop, 355, 350, 800, 800, PriorConfig().size_words, 2.0)
    assert d["centroid"] == (399.5, 399.5) and d["position"] == "center"
    assert d["size"] == "medium" and d["orientation"] is None
    assert d["elongation"] == pytest.approx(100 / 90, abs=1e-3)


def test_describe_uses_the_patch_size_not_a_fixed_800():
    crop = np.ones((20, 20), bool)  # 400 px of a 100 x 50 patch: 0.08 -> large
    d = describe(crop, 75, 0, 100, 50, PriorConfig().size_words, 2.0)
    assert d["area_fraction"] == pytest.approx(0.08) and d["size"] == "large"
    assert d["position"] == "top right"  # centroid (84.5, 9.5): col 84.5*3/100 = 2, row 9.5*3/50 = 0


def test_describe_diagonal_object():
    crop = _segment((0, 0), (79, 79), thickness=5, size=80)
    d = describe(crop, 10, 10, 800, 800, PriorConfig().size_words, 2.0)
    assert d["orientation"] == "diagonal from top left to bottom right"
    assert abs(d["angle"] - 45.0) < 3.0
    assert d["position"] == "top left"


# ---------------------------------------------------------------- the template drafter's English


def test_pick_is_a_function_of_key_and_salt():
    options = ("one", "two", "three", "four")
    assert pick(options, "P0001", "open") == pick(options, "P0001", "open")
    assert len({pick(options, f"P{k:04d}", "open") for k in range(40)}) == 4  # every option gets used
    assert pick(options, "P0001", "open") == "one"  # fixed by sha256, so the same on every machine and run


def test_numbers_agree_with_their_nouns_and_verbs():
    assert counted(1, "plane", "planes") == "one plane" and counted(3, "plane", "planes") == "three planes"
    assert counted(14, "small vehicle", "small vehicles") == "14 small vehicles"
    assert (verb(1, "is", "are"), verb(2, "is", "are")) == ("is", "are")
    assert (number(0), number(12), number(13)) == ("zero", "twelve", "13")


def test_lists_articles_and_shares():
    assert listing([]) == "" and listing(["a"]) == "a" and listing(["a", "b"]) == "a and b"
    assert listing(["a", "b", "c"]) == "a, b and c"
    assert (a("plane"), a("airport apron")) == ("a plane", "an airport apron")
    assert capital("many <p> ships-1 </p>") == "Many <p> ships-1 </p>"
    assert (percent(0.004), percent(0.126)) == ("under 1%", "about 13%")


def test_a_category_that_names_a_size_takes_no_other():
    assert sized("medium", "plane") == "medium plane"
    assert sized("small", "large vehicle") == "large vehicle" and sized("tiny", "small vehicles") == "small vehicles"
    assert sized("", "plane") == "plane"
