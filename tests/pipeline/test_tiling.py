"""Tiling must match the iSAID devkit window for window: GeoPixelD's patch names depend on it."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.tiling import parse_patch_name, patch_name, tile_windows, window_starts


@pytest.mark.parametrize(
    "side, starts",
    [(1147, [0, 347]), (1023, [0, 223]), (1300, [0, 500]), (1400, [0, 600]), (1401, [0, 600, 601]),
     (2000, [0, 600, 1200]), (801, [0, 1])],
)
def test_window_starts_like_the_devkit(side, starts):
    assert window_starts(side, 800, 600) == starts


def test_p0003_names_used_by_geopixeld():
    names = [patch_name("P0003", w, False) for w in tile_windows(1147, 1023)]
    assert sorted(names) == sorted(
        ["P0003_0_800_0_800", "P0003_0_800_347_1147", "P0003_223_1023_0_800", "P0003_223_1023_347_1147"]
    )


@pytest.mark.parametrize("w, h", [(800, 800), (700, 5000), (5000, 800), (640, 480)])
def test_small_side_keeps_the_image_whole(w, h):
    (win,) = tile_windows(w, h)
    assert (win.x0, win.y0, win.x1, win.y1) == (0, 0, w, h)
    assert patch_name("P0001", win, True) == "P0001"


@pytest.mark.parametrize("w, h, patch, overlap", [(3001, 1999, 800, 200), (4096, 4096, 512, 128), (1000, 900, 600, 0)])
def test_windows_cover_every_pixel_inside_the_image(w, h, patch, overlap):
    wins = tile_windows(w, h, patch, overlap)
    cover = np.zeros((h, w), bool)
    for win in wins:
        assert 0 <= win.x0 < win.x1 <= w and 0 <= win.y0 < win.y1 <= h
        assert (win.width, win.height) == (patch, patch)
        cover[win.y0 : win.y1, win.x0 : win.x1] = True
    assert cover.all()
    assert len({(v.x0, v.y0) for v in wins}) == len(wins)


def test_parse_patch_name_round_trip_and_refusals():
    stem, win = parse_patch_name("P0003_223_1023_347_1147")
    assert stem == "P0003" and (win.x0, win.y0, win.x1, win.y1) == (347, 223, 1147, 1023)
    assert patch_name(stem, win, False) == "P0003_223_1023_347_1147"
    for bad in ("P0003", "P0003_0_800_347", "P0003_800_0_0_800", "P0003_a_800_0_800"):
        assert parse_patch_name(bad) is None
