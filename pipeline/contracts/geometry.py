"""Polygon checks, repair, clipping to a patch window, and rasterisation into a bounding-box crop.

Pure functions: they raise `GeometryError` with a reason and never touch files. Coordinates are pixel
centres (a vertex at x covers pixel column x), the convention of iSAID's polygons and of cv2.fillPoly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon, box
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity, make_valid

from pipeline.contracts.records import Window


class GeometryError(ValueError):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def parse_coco_polygons(segmentation, width: int, height: int, tolerance: float) -> list[np.ndarray]:
    """COCO polygon lists -> (N, 2) arrays; refuses odd lengths, < 3 points, NaN and out-of-bounds points."""
    if not isinstance(segmentation, list) or not segmentation:
        raise GeometryError("segmentation-missing", "segmentation is empty or not a list of polygons")
    if any(isinstance(p, dict) for p in segmentation):
        raise GeometryError("segmentation-invalid", "segmentation is a list holding RLE objects; COCO allows one RLE "
                            "object or a list of polygons")
    polys = []
    for k, flat in enumerate(segmentation):
        if not isinstance(flat, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat):
            nested = isinstance(flat, list) and any(isinstance(v, list) for v in flat)
            raise GeometryError("polygon-not-numeric", f"polygon {k} is not a flat list of numbers"
                                + (" (nested deeper than COCO's [[x, y, ...], ...])" if nested else ""))
        if len(flat) % 2:
            raise GeometryError("polygon-odd-length", f"polygon {k} has an odd number of coordinates ({len(flat)})")
        if len(flat) < 6:
            raise GeometryError("polygon-too-few-points", f"polygon {k} has {len(flat) // 2} point(s); at least 3 are needed")
        try:
            pts = np.asarray(flat, dtype=np.float64).reshape(-1, 2)
        except OverflowError:  # an integer beyond float range (JSON allows any length)
            raise GeometryError("polygon-out-of-bounds", f"polygon {k} has a coordinate too large for a float") from None
        if not np.isfinite(pts).all():
            raise GeometryError("polygon-not-finite", f"polygon {k} has NaN or infinite coordinates")
        lo = -tolerance
        if (pts[:, 0] < lo).any() or (pts[:, 1] < lo).any() or (pts[:, 0] > width - 1 + tolerance).any() or (
            pts[:, 1] > height - 1 + tolerance
        ).any():
            bad = pts[(pts[:, 0] < lo) | (pts[:, 1] < lo) | (pts[:, 0] > width - 1 + tolerance) | (pts[:, 1] > height - 1 + tolerance)][0]
            raise GeometryError(
                "polygon-out-of-bounds",
                f"polygon {k} has point ({bad[0]:g}, {bad[1]:g}) outside the {width}x{height} image",
            )
        polys.append(pts)
    return polys


@dataclass
class Shape:
    """An annotation's geometry in image coordinates, repaired if it had to be."""

    geom: BaseGeometry  # Polygon or MultiPolygon
    repaired: str | None  # why it was repaired (shapely's explanation), None when valid as given


def polygons_to_shape(polys: list[np.ndarray]) -> Shape:
    """Union of an annotation's polygons; self-intersections are repaired with shapely.make_valid."""
    parts, reasons = [], []
    for pts in polys:
        p = Polygon(pts)
        if not p.is_valid:
            reasons.append(explain_validity(p))
            p = _polygonal(make_valid(p))
        if not p.is_empty:
            parts.append(p)
    if not parts:
        raise GeometryError("polygon-degenerate", "polygon has zero area")
    geom = parts[0] if len(parts) == 1 else _polygonal(shapely.union_all(parts))
    if geom.is_empty or geom.area <= 0:
        raise GeometryError("polygon-degenerate", "polygon has zero area")
    return Shape(geom, "; ".join(reasons) or None)


def _polygonal(geom: BaseGeometry) -> BaseGeometry:
    """Keep the polygonal parts of what make_valid or an intersection returns (lines and points go)."""
    if isinstance(geom, (Polygon, MultiPolygon)):
        return geom
    polys = [g for g in getattr(geom, "geoms", []) if isinstance(g, (Polygon, MultiPolygon))]
    flat = [p for g in polys for p in (g.geoms if isinstance(g, MultiPolygon) else [g])]
    return MultiPolygon(flat) if flat else Polygon()


def window_box(window: Window) -> Polygon:
    """The window as a shape over pixel centres (end exclusive)."""
    return box(window.x0, window.y0, window.x1 - 1, window.y1 - 1)


def clip_to_window(geom: BaseGeometry, window: Window, min_fragment_area: float) -> tuple[BaseGeometry, bool] | None:
    """Clip to the window and move to patch coordinates; slivers under `min_fragment_area` are dropped.

    Returns (geometry, truncated) or None when nothing is left. Multipolygons stay multipolygons.
    """
    win = window_box(window)
    inside = win.contains(geom)
    clipped = geom if inside else _polygonal(geom.intersection(win))
    parts = [p for p in getattr(clipped, "geoms", [clipped]) if not p.is_empty and p.area >= min_fragment_area]
    if not parts:
        return None
    out = parts[0] if len(parts) == 1 else MultiPolygon(parts)
    return shapely.affinity.translate(out, -window.x0, -window.y0), not inside


def rasterize(geom: BaseGeometry, height: int, width: int) -> tuple[np.ndarray, int, int] | None:
    """Fill a (multi)polygon, holes excluded, into its bounding-box crop: (bool crop, x0, y0)."""
    minx, miny, maxx, maxy = geom.bounds
    x0, y0 = max(int(math.floor(minx)), 0), max(int(math.floor(miny)), 0)
    x1, y1 = min(int(math.ceil(maxx)) + 1, width), min(int(math.ceil(maxy)) + 1, height)
    if x1 <= x0 or y1 <= y0:
        return None
    crop = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    off = np.array([x0, y0], dtype=np.float64)
    for poly in getattr(geom, "geoms", [geom]):
        holes = [_ring(r.coords, off) for r in poly.interiors]
        if not holes:
            cv2.fillPoly(crop, [_ring(poly.exterior.coords, off)], 1)
            continue
        # a part with holes is drawn on its own, so its holes never erase another part (an island in a hole)
        part = np.zeros_like(crop)
        cv2.fillPoly(part, [_ring(poly.exterior.coords, off)], 1)
        cv2.fillPoly(part, holes, 0)
        crop |= part
    if not crop.any():
        return None
    return crop.astype(bool), x0, y0


def _ring(coords, off: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(coords, dtype=np.float64)[:, :2] - off).astype(np.int32)
