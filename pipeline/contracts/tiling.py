"""Tiling identical to the iSAID devkit: pure functions, no I/O."""

from __future__ import annotations

import re

from pipeline.contracts.records import Window

_PATCH_NAME = re.compile(r"^(?P<stem>.+)_(?P<y0>\d+)_(?P<y1>\d+)_(?P<x0>\d+)_(?P<x1>\d+)$")


def window_starts(side: int, patch: int, stride: int) -> list[int]:
    """Starts 0, stride, 2*stride, ... below `side`; a window crossing the edge is shifted back inside."""
    return sorted({min(s, side - patch) for s in range(0, side, stride)})


def tile_windows(width: int, height: int, patch: int = 800, overlap: int = 200) -> list[Window]:
    """All windows of an image; an image with either side <= patch is kept whole (unsplit)."""
    if width <= patch or height <= patch:
        return [Window(0, 0, width, height)]
    stride = patch - overlap
    xs = window_starts(width, patch, stride)
    ys = window_starts(height, patch, stride)
    return [Window(x, y, x + patch, y + patch) for y in ys for x in xs]


def patch_name(stem: str, window: Window, whole: bool) -> str:
    """`P0003_0_800_347_1147` (rows first, end exclusive); a whole image keeps its own name."""
    if whole:
        return stem
    return f"{stem}_{window.y0}_{window.y1}_{window.x0}_{window.x1}"


def parse_patch_name(name: str) -> tuple[str, Window] | None:
    """Inverse of `patch_name` for devkit patches; None when the name carries no window."""
    m = _PATCH_NAME.match(name)
    if not m:
        return None
    y0, y1, x0, x1 = (int(m[k]) for k in ("y0", "y1", "x0", "x1"))
    if y1 <= y0 or x1 <= x0:
        return None
    return m["stem"], Window(x0, y0, x1, y1)
