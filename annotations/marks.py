"""Set-of-marks (SoM): numbered black squares on key instances, plus the 3x3 grid.

The LMM that drafts a conversation is asked about "the {category} at the {pos} marked with number {k}", so a
mark must sit on its own object (not on a neighbour or the background, as the centroid of a concave object
would) and marks must never cover each other. Placement and drawing are pure functions, no file I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from pipeline.contracts.config import MarkConfig
from pipeline.contracts.records import Mark

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_TEXT_RGB = (255, 255, 0)  # yellow
_BOX_RGB = (0, 0, 0)
_PAD = 3  # px between the digits and the square's side
_GAP = 1  # px kept free between two squares

Box = tuple[int, int, int, int]  # left, top, right, bottom; right/bottom exclusive, patch px


def _thickness(cfg: MarkConfig) -> int:
    """Stroke of the digits: 1 px stays legible at small scales, 2 px at large ones."""
    return 1 if cfg.font_scale < 0.8 else 2


def mark_box(number: int, cfg: MarkConfig) -> tuple[int, int]:
    """(width, height) of the square for this number: cfg.box, widened so two/three-digit numbers fit."""
    (tw, th), base = cv2.getTextSize(str(number), _FONT, cfg.font_scale, _thickness(cfg))
    return max(cfg.box, tw + 2 * _PAD), max(cfg.box, th + base + 2 * _PAD)


def _box_at(x: int, y: int, wh: tuple[int, int]) -> Box:
    """The square of size `wh` centred on pixel (x, y) (for even sides the centre is right/below the middle)."""
    left, top = x - wh[0] // 2, y - wh[1] // 2
    return left, top, left + wh[0], top + wh[1]


def _place_one(
    mask: np.ndarray, x0: int, y0: int, wh: tuple[int, int], placed: list[Box], patch_hw: tuple[int, int]
) -> tuple[int, int] | None:
    """Best centre (patch px) on `mask` whose square avoids `placed`, or None when every pixel is blocked.

    Ranking: square inside the patch, then distance to the object's boundary (pole of inaccessibility, so the
    square covers the object rather than its surroundings), then nearness to the mask centroid, then y, x.
    """
    h, w = mask.shape
    ph, pw = patch_hw
    bw, bh = wh
    # Padding by one background pixel makes the crop border count as the object's boundary.
    padded = np.pad(mask, 1).astype(np.uint8)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]

    # A centre conflicts with a placed box when its square comes closer than _GAP px to the box; those
    # centres form one rectangle per placed box, rasterised in crop coordinates (a few slices, no pixel loop).
    forbidden = np.zeros((h, w), dtype=bool)
    for pl, pt, pr, pb in placed:
        xa, xb = pl - _GAP - bw + bw // 2 + 1 - x0, pr + _GAP + bw // 2 - 1 - x0  # inclusive
        ya, yb = pt - _GAP - bh + bh // 2 + 1 - y0, pb + _GAP + bh // 2 - 1 - y0
        if xb >= 0 and yb >= 0 and xa < w and ya < h:
            forbidden[max(ya, 0) : yb + 1, max(xa, 0) : xb + 1] = True

    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    cy, cx = ys.mean(), xs.mean()
    px, py = xs + x0, ys + y0
    ok = ~forbidden[ys, xs] & (px >= 0) & (px < pw) & (py >= 0) & (py < ph)
    if not ok.any():
        return None
    ys, xs, px, py = ys[ok], xs[ok], px[ok], py[ok]

    inside = (px - bw // 2 >= 0) & (py - bh // 2 >= 0) & (px - bw // 2 + bw <= pw) & (py - bh // 2 + bh <= ph)
    if inside.any():
        ys, xs, px, py = ys[inside], xs[inside], px[inside], py[inside]
    d = np.round(dist[ys, xs], 2)  # OpenCV's result varies in the last bits with its thread count
    top = d == d.max()
    ys, xs, px, py = ys[top], xs[top], px[top], py[top]
    near = (ys - cy) ** 2 + (xs - cx) ** 2
    i = np.lexsort((px, py, near))[0]  # last key is primary: nearest the centroid, then lowest y, then x
    return int(px[i]), int(py[i])


def place_marks(
    objects: Sequence[tuple[int, int, np.ndarray, tuple[int, int]]], patch_hw: tuple[int, int], cfg: MarkConfig
) -> tuple[list[Mark], list[int]]:
    """Put one non-overlapping mark on each object, in the given order, with its centre on the object.

    objects: (number, object_id, crop_mask, (x0, y0)) in the order marks should be placed (the caller passes
    the largest first, so big objects take their best spot); crop_mask is a bool/uint8 HxW array of the
    object's pixels whose top-left pixel is at (x0, y0) in the patch. Returns (marks, unplaced_object_ids):
    an object with no pixel that can host a free square is reported, never dropped or overlapped.
    """
    marks: list[Mark] = []
    unplaced: list[int] = []
    placed: list[Box] = []
    for number, object_id, crop, (x0, y0) in objects:
        wh = mark_box(number, cfg)
        centre = _place_one(np.asarray(crop) != 0, int(x0), int(y0), wh, placed, patch_hw)
        if centre is None:
            unplaced.append(object_id)
            continue
        placed.append(_box_at(*centre, wh))
        marks.append(Mark(number=number, object_id=object_id, x=centre[0], y=centre[1], size=wh[0]))
    return marks, unplaced


def render_som(image_rgb: np.ndarray, marks: Sequence[Mark], cfg: MarkConfig) -> np.ndarray:
    """A new RGB uint8 image with the 3x3 grid and the marks, as the SoM prompt refers to them.

    The grid makes the 3x3 position words ("top left" ...) visible to the LMM; each mark is a black filled
    square centred on (x, y) with its number in anti-aliased yellow. The input image is not modified.
    """
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image_rgb.shape} {image_rgb.dtype}")
    out = np.ascontiguousarray(image_rgb).copy()
    h, w = out.shape[:2]
    if cfg.draw_grid:
        color = tuple(int(c) for c in cfg.grid_color)
        for k in (1, 2):
            x, y = round(w * k / 3), round(h * k / 3)
            cv2.line(out, (x, 0), (x, h - 1), color, cfg.grid_thickness, cv2.LINE_8)
            cv2.line(out, (0, y), (w - 1, y), color, cfg.grid_thickness, cv2.LINE_8)
    thickness = _thickness(cfg)
    for m in marks:
        left, top, right, bottom = _box_at(m.x, m.y, mark_box(m.number, cfg))
        cv2.rectangle(out, (left, top), (right - 1, bottom - 1), _BOX_RGB, cv2.FILLED)
        text = str(m.number)
        (tw, th), _ = cv2.getTextSize(text, _FONT, cfg.font_scale, thickness)
        origin = ((left + right - tw) // 2, (top + bottom + th) // 2)  # origin is the text's bottom-left
        cv2.putText(out, text, origin, _FONT, cfg.font_scale, _TEXT_RGB, thickness, cv2.LINE_AA)
    return out
