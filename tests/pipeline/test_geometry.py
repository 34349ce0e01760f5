"""Polygon checks, repair, clipping and rasterisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from shapely.geometry import MultiPolygon, Polygon

from pipeline.geometry import GeometryError, clip_to_window, parse_coco_polygons, polygons_to_shape, rasterize
from pipeline.records import Window


@pytest.mark.parametrize(
    "seg, kind",
    [
        ([[1, 1, 5, 1, 5]], "polygon-odd-length"),
        ([[1, 1, 5, 1]], "polygon-too-few-points"),
        ([[1, 1, math.nan, 1, 5, 5]], "polygon-not-finite"),
        ([[1, 1, math.inf, 1, 5, 5]], "polygon-not-finite"),
        ([[1, 1, 150, 1, 5, 5]], "polygon-out-of-bounds"),
        ([[1, -5, 10, 1, 5, 5]], "polygon-out-of-bounds"),
        ([[1, True, 10, 1, 5, 5]], "polygon-not-numeric"),
        ([], "segmentation-missing"),
    ],
)
def test_bad_polygons_are_named(seg, kind):
    with pytest.raises(GeometryError) as err:
        parse_coco_polygons(seg, 100, 100, tolerance=2.0)
    assert err.value.kind == kind


def test_points_within_tolerance_are_accepted():
    (pts,) = parse_coco_polygons([[-1.5, 0, 100.5, 0, 50, 50]], 100, 100, tolerance=2.0)
    assert pts.shape == (3, 2)


def test_bow_tie_is_repaired_and_multi_part_kept():
    shape = polygons_to_shape([np.array([[0, 0], [10, 10], [10, 0], [0, 10]], float)])
    assert shape.repaired and "Self-intersection" in shape.repaired
    assert shape.geom.is_valid and shape.geom.area == pytest.approx(50)
    two = polygons_to_shape([np.array([[0, 0], [4, 0], [4, 4]], float), np.array([[10, 10], [14, 10], [14, 14]], float)])
    assert isinstance(two.geom, MultiPolygon) and two.repaired is None
    with pytest.raises(GeometryError, match="zero area"):
        polygons_to_shape([np.array([[0, 0], [5, 5], [10, 10]], float)])


def test_clip_inside_crossing_split_and_sliver():
    win = Window(100, 100, 200, 200)
    inside, truncated = clip_to_window(Polygon([(120, 120), (150, 120), (150, 150)]), win, 1.0)
    assert not truncated and inside.bounds == (20, 20, 50, 50)
    crossing, truncated = clip_to_window(Polygon([(50, 120), (150, 120), (150, 160), (50, 160)]), win, 1.0)
    assert truncated and crossing.bounds == (0, 20, 50, 60)
    u_shape = Polygon([(110, 50), (190, 50), (190, 150), (170, 150), (170, 80), (130, 80), (130, 150), (110, 150)])
    assert u_shape.is_valid  # one polygon whose base lies above the window: its two prongs enter it apart
    split, truncated = clip_to_window(u_shape, win, 1.0)
    assert truncated and isinstance(split, MultiPolygon) and len(split.geoms) == 2
    sliver = Polygon([(50, 120), (100.2, 120), (100.2, 190), (50, 190)])  # 0.2 px x 70 px inside the window
    assert clip_to_window(sliver, win, min_fragment_area=16.0) is None
    kept, _ = clip_to_window(sliver, win, min_fragment_area=10.0)
    assert kept.area == pytest.approx(14.0)


def test_rasterize_leaves_holes_empty_and_clips_to_canvas():
    ring = Polygon([(10, 10), (40, 10), (40, 40), (10, 40)], holes=[[(20, 20), (30, 20), (30, 30), (20, 30)]])
    crop, x0, y0 = rasterize(ring, 100, 100)
    assert (x0, y0) == (10, 10) and crop.shape == (31, 31)
    assert not crop[15, 15] and crop[2, 2]  # (25, 25) is in the hole, (12, 12) on the ring
    assert abs(int(crop.sum()) - ring.area) < ring.length * 1.5
    crop, x0, y0 = rasterize(Polygon([(90, 90), (120, 90), (120, 120), (90, 120)]), 100, 100)
    assert (x0, y0, crop.shape) == (90, 90, (10, 10)) and crop.all()
