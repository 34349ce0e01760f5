"""Spatial prior words, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from annotations.priors import describe, orientation, position_word, quantity_word, word_for
from pipeline.config import PriorConfig, TierRule


@pytest.mark.parametrize(
    "x, y, word",
    [(10, 10, "top left"), (400, 10, "top"), (790, 10, "top right"), (10, 400, "left"), (400, 400, "center"),
     (790, 400, "right"), (10, 790, "bottom left"), (400, 790, "bottom"), (799.9, 799.9, "bottom right"),
     (266, 10, "top left"), (267, 10, "top")],
)
def test_position_words(x, y, word):
    assert position_word(x, y, 800, 800) == word


def test_size_and_quantity_words():
    words = PriorConfig().size_words
    assert [word_for(f, words) for f in (0.0005, 0.005, 0.03, 0.1, 0.5)] == ["tiny", "small", "medium", "large", "very large"]
    q = TierRule().quantity_words
    assert [quantity_word(n, q) for n in (1, 2, 4, 7, 25, 80, 300)] == [
        "a single", "two", "a few", "several", "many", "numerous", "more than a hundred"]


def test_orientation_words():
    bar = np.zeros((20, 100), bool)
    bar[8:12, :] = True
    assert orientation(bar, 2.0)[2] == "horizontal"
    assert orientation(bar.T, 2.0)[2] == "vertical"
    diag = np.zeros((60, 60), np.uint8)
    for i in range(60):
        diag[i, max(i - 2, 0) : i + 3] = 1
    assert orientation(diag.astype(bool), 2.0)[2] == "diagonal from top left to bottom right"
    assert orientation(np.fliplr(diag).astype(bool), 2.0)[2] == "diagonal from bottom left to top right"
    square = np.ones((30, 30), bool)
    angle, elong, word = orientation(square, 2.0)
    assert word is None and elong == pytest.approx(1.0)


def test_describe_crop_in_patch_coordinates():
    crop = np.ones((10, 40), bool)
    d = describe(crop, 700, 20, 800, 800, PriorConfig().size_words, 2.0)
    assert d["area"] == 400 and d["centroid"] == (719.5, 24.5) and d["position"] == "top right"
    assert d["size"] == "tiny" and d["orientation"] == "horizontal"
