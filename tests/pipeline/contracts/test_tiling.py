"""Tiling must match the iSAID devkit window for window: GeoPixelD's patch names depend on it.

The expected windows below were worked out by hand from the devkit rule (800 px patches, 200 px overlap,
starts 0, 600, 1200, ... below the side, a window crossing the edge shifted back inside; an image with
either side <= 800 kept whole). `_devkit_starts` re-implements the devkit's own while-loop as an
independent oracle for the many-sizes checks.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.contracts.records import Window
from pipeline.contracts.tiling import parse_patch_name, patch_name, tile_windows, window_starts


def _devkit_starts(side: int, patch: int, stride: int) -> list[int]:
    """The DOTA/iSAID devkit loop: step by `stride` until a window reaches the edge, clamp that one inside."""
    starts, s = [], 0
    while True:
        if s + patch >= side:
            starts.append(max(side - patch, 0))
            return starts
        starts.append(s)
        s += stride


def _xy(windows: list[Window]) -> tuple[set[int], set[int]]:
    return {w.x0 for w in windows}, {w.y0 for w in windows}


def _check_grid(windows: list[Window], width: int, height: int, patch: int) -> None:
    """Inside the image, exactly patch-sized, no duplicates, every pixel covered."""
    cover = np.zeros((height, width), bool)
    for win in windows:
        assert 0 <= win.x0 < win.x1 <= width and 0 <= win.y0 < win.y1 <= height
        assert (win.width, win.height) == (patch, patch)
        cover[win.y0 : win.y1, win.x0 : win.x1] = True
    assert cover.all()
    keys = [(w.x0, w.y0, w.x1, w.y1) for w in windows]
    assert len(set(keys)) == len(keys)


# ---------------------------------------------------------------- window starts


@pytest.mark.parametrize(
    "side, starts",
    [
        (1147, [0, 347]),  # P0003's width: 600 + 800 > 1147 -> shifted back to 1147 - 800
        (1023, [0, 223]),  # P0003's height
        (1300, [0, 500]),
        (1400, [0, 600]),  # 600 + 800 == 1400: the second window ends exactly on the edge
        (1401, [0, 600, 601]),  # one pixel more needs a third, almost identical window
        (2000, [0, 600, 1200]),
        (2001, [0, 600, 1200, 1201]),
        (801, [0, 1]),
        (1200, [0, 400]),
    ],
)
def test_window_starts_by_hand(side, starts):
    assert window_starts(side, 800, 600) == starts


@pytest.mark.parametrize("side", list(range(801, 3700, 37)) + [1399, 1400, 1401, 1999, 2000, 2001, 4000])
def test_window_starts_match_the_devkit_loop(side):
    assert window_starts(side, 800, 600) == _devkit_starts(side, 800, 600)


@pytest.mark.parametrize("patch, overlap", [(512, 128), (600, 0), (256, 255), (1024, 200)])
@pytest.mark.parametrize("side", [1025, 1300, 2048, 3001])
def test_window_starts_custom_patch_and_overlap_match_the_devkit_loop(side, patch, overlap):
    starts = window_starts(side, patch, patch - overlap)
    assert starts == _devkit_starts(side, patch, patch - overlap)
    assert starts == sorted(starts) and starts[0] == 0 and starts[-1] == side - patch
    # neighbours overlap by at least `overlap` (the last one may overlap more after the shift back)
    assert all(0 < b - a <= patch - overlap for a, b in zip(starts, starts[1:]))


# ---------------------------------------------------------------- whole windows


def test_p0003_windows_and_names_used_by_geopixeld():
    wins = tile_windows(1147, 1023)  # width, height
    assert _xy(wins) == ({0, 347}, {0, 223})
    assert len(wins) == 4
    names = {patch_name("P0003", w, False) for w in wins}
    assert names == {"P0003_0_800_0_800", "P0003_0_800_347_1147", "P0003_223_1023_0_800", "P0003_223_1023_347_1147"}
    _check_grid(wins, 1147, 1023, 800)


def test_names_put_rows_first_and_ends_exclusive():
    assert patch_name("P0003", Window(x0=347, y0=0, x1=1147, y1=800), False) == "P0003_0_800_347_1147"
    assert patch_name("P0003", Window(x0=0, y0=223, x1=800, y1=1023), False) == "P0003_223_1023_0_800"


@pytest.mark.parametrize(
    "width, height, xs, ys",
    [
        (1300, 1300, {0, 500}, {0, 500}),
        (1400, 1300, {0, 600}, {0, 500}),
        (1401, 1400, {0, 600, 601}, {0, 600}),
        (801, 801, {0, 1}, {0, 1}),
        (2000, 1401, {0, 600, 1200}, {0, 600, 601}),
    ],
)
def test_exact_windows_for_several_sizes(width, height, xs, ys):
    wins = tile_windows(width, height)
    assert _xy(wins) == (xs, ys)
    assert len(wins) == len(xs) * len(ys)  # the full grid, each pair once
    _check_grid(wins, width, height, 800)


@pytest.mark.parametrize("w, h", [(800, 800), (700, 5000), (5000, 700), (5000, 800), (800, 5000), (640, 480), (1, 1)])
def test_small_side_keeps_the_image_whole(w, h):
    (win,) = tile_windows(w, h)
    assert (win.x0, win.y0, win.x1, win.y1) == (0, 0, w, h)
    assert patch_name("P0001", win, True) == "P0001"


def test_801_is_split_but_800_is_not():
    assert len(tile_windows(800, 801)) == 1
    assert len(tile_windows(801, 800)) == 1
    assert len(tile_windows(801, 801)) == 4


@pytest.mark.parametrize(
    "w, h, patch, overlap",
    [(3001, 1999, 800, 200), (4096, 4096, 512, 128), (1000, 900, 600, 0), (1147, 1023, 800, 200), (5000, 3000, 800, 200)],
)
def test_windows_cover_every_pixel_inside_the_image(w, h, patch, overlap):
    wins = tile_windows(w, h, patch, overlap)
    _check_grid(wins, w, h, patch)
    xs, ys = _xy(wins)
    assert sorted(xs) == _devkit_starts(w, patch, patch - overlap)
    assert sorted(ys) == _devkit_starts(h, patch, patch - overlap)


def test_custom_patch_and_overlap_by_hand():
    # 512 px patches, 128 overlap: stride 384; starts 0, 384, 768 -> 1000 - 512 = 488
    wins = tile_windows(1000, 700, 512, 128)
    assert _xy(wins) == ({0, 384, 488}, {0, 188})
    # no overlap: 600 px patches over 1000 px: 0, then 600 shifted back to 400
    assert _xy(tile_windows(1000, 1000, 600, 0)) == ({0, 400}, {0, 400})
    # a custom patch size also moves the "kept whole" threshold
    assert len(tile_windows(700, 700, 600, 100)) == 4
    assert tile_windows(600, 5000, 600, 100) == [Window(0, 0, 600, 5000)]


# ---------------------------------------------------------------- names


def test_parse_patch_name_of_p0003():
    stem, win = parse_patch_name("P0003_223_1023_347_1147")
    assert stem == "P0003" and (win.x0, win.y0, win.x1, win.y1) == (347, 223, 1147, 1023)


@pytest.mark.parametrize("stem", ["P0003", "P2802", "my_image_7", "a"])
@pytest.mark.parametrize("size", [(1147, 1023), (3001, 1999), (801, 2400)])
def test_parse_patch_name_round_trips(stem, size):
    for win in tile_windows(*size):
        name = patch_name(stem, win, False)
        got = parse_patch_name(name)
        assert got is not None
        s, w = got
        assert s == stem and (w.x0, w.y0, w.x1, w.y1) == (win.x0, win.y0, win.x1, win.y1)
        assert patch_name(s, w, False) == name


@pytest.mark.parametrize(
    "bad",
    [
        "P0003",  # a whole image: no window
        "",
        "P0003_0_800_347",  # three numbers
        "P0003_800_0_0_800",  # y1 < y0
        "P0003_0_800_800_800",  # x1 == x0
        "P0003_0_0_0_800",  # y1 == y0
        "P0003_0_800_1147_347",  # x1 < x0
        "P0003_a_800_0_800",
        "P0003_-1_800_0_800",
        "P0003_0_800_0_800.png",
        "_0_800_0_800",  # no stem
        "0_800_0_800",
    ],
)
def test_parse_patch_name_refuses_bad_names(bad):
    assert parse_patch_name(bad) is None
