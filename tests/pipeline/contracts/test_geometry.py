"""Polygon checks, repair, clipping and rasterisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from shapely.geometry import MultiPolygon, Point, Polygon, box

from pipeline.contracts.geometry import (
    GeometryError,
    clip_to_window,
    parse_coco_polygons,
    polygons_to_shape,
    rasterize,
    window_box,
)
from pipeline.contracts.records import Window

# ---------------------------------------------------------------- parse_coco_polygons

GOOD = [10, 10, 50, 10, 50, 40]


@pytest.mark.parametrize(
    "seg, kind",
    [
        ([[1, 1, 5, 1, 5]], "polygon-odd-length"),
        ([[1, 1, 5, 1, 5, 5, 7]], "polygon-odd-length"),
        ([[1, 1, 5, 1]], "polygon-too-few-points"),
        ([[1, 1]], "polygon-too-few-points"),
        ([[]], "polygon-too-few-points"),
        ([[1, 1, math.nan, 1, 5, 5]], "polygon-not-finite"),
        ([[1, 1, math.inf, 1, 5, 5]], "polygon-not-finite"),
        ([[1, 1, 5, -math.inf, 5, 5]], "polygon-not-finite"),
        ([[1, 1, 150, 1, 5, 5]], "polygon-out-of-bounds"),  # x far right
        ([[1, 1, 5, 1, 5, 150]], "polygon-out-of-bounds"),  # y far below
        ([[1, -5, 10, 1, 5, 5]], "polygon-out-of-bounds"),  # y above
        ([[-5, 1, 10, 1, 5, 5]], "polygon-out-of-bounds"),  # x left
        ([[-2.01, 1, 10, 1, 5, 5]], "polygon-out-of-bounds"),  # just beyond the 2 px tolerance
        ([[1, 1, 101.01, 1, 5, 5]], "polygon-out-of-bounds"),  # width - 1 + 2 = 101 is the last allowed
        ([[1, 1, 10, 1, 5, 101.01]], "polygon-out-of-bounds"),
        ([[1, True, 10, 1, 5, 5]], "polygon-not-numeric"),
        ([[1, 1, 10, False, 5, 5]], "polygon-not-numeric"),
        ([[1, "1", 10, 1, 5, 5]], "polygon-not-numeric"),
        ([[1, None, 10, 1, 5, 5]], "polygon-not-numeric"),
        ([[1, [1], 10, 1, 5, 5]], "polygon-not-numeric"),
        ([1, 1, 10, 1, 5, 5], "polygon-not-numeric"),  # flat, not a list of polygons
        ([GOOD, "x"], "polygon-not-numeric"),  # the second polygon is bad
        ([GOOD, [1, 1, 5, 1]], "polygon-too-few-points"),
        ([], "segmentation-missing"),
        (None, "segmentation-missing"),
        ({"size": [100, 100], "counts": "abc"}, "segmentation-missing"),  # an RLE is not a polygon list
    ],
)
def test_bad_polygons_are_named(seg, kind):
    with pytest.raises(GeometryError) as err:
        parse_coco_polygons(seg, 100, 100, tolerance=2.0)
    assert err.value.kind == kind
    assert isinstance(err.value, ValueError) and str(err.value)


def test_points_within_tolerance_are_accepted():
    (pts,) = parse_coco_polygons([[-2.0, 0, 101.0, 0, 50, 101.0]], 100, 100, tolerance=2.0)
    assert pts.shape == (3, 2) and pts.dtype == np.float64
    assert pts.tolist() == [[-2.0, 0.0], [101.0, 0.0], [50.0, 101.0]]


def test_zero_tolerance_allows_only_pixel_centres_of_the_image():
    parse_coco_polygons([[0, 0, 99, 0, 99, 49]], 100, 50, tolerance=0.0)
    with pytest.raises(GeometryError) as err:
        parse_coco_polygons([[0, 0, 100, 0, 99, 49]], 100, 50, tolerance=0.0)
    assert err.value.kind == "polygon-out-of-bounds"
    with pytest.raises(GeometryError) as err:  # width and height are not swapped
        parse_coco_polygons([[0, 0, 99, 0, 99, 50]], 100, 50, tolerance=0.0)
    assert err.value.kind == "polygon-out-of-bounds"


def test_parse_keeps_every_polygon_as_x_y_pairs():
    polys = parse_coco_polygons([GOOD, [0, 0, 4, 0, 4, 4, 0, 4]], 100, 100, tolerance=2.0)
    assert len(polys) == 2
    assert polys[0].tolist() == [[10, 10], [50, 10], [50, 40]]
    assert polys[1].shape == (4, 2)


# ---------------------------------------------------------------- polygons_to_shape


def test_bow_tie_is_repaired():
    shape = polygons_to_shape([np.array([[0, 0], [10, 10], [10, 0], [0, 10]], float)])
    assert shape.repaired and "Self-intersection" in shape.repaired
    assert shape.geom.is_valid and shape.geom.area == pytest.approx(50)  # two triangles of 25
    assert shape.geom.area > 0


def test_valid_polygon_is_kept_as_given():
    pts = np.array([[0, 0], [10, 0], [10, 5], [0, 5]], float)
    shape = polygons_to_shape([pts])
    assert shape.repaired is None and isinstance(shape.geom, Polygon)
    assert shape.geom.area == pytest.approx(50) and shape.geom.bounds == (0, 0, 10, 5)


def test_multi_part_annotation_keeps_its_parts():
    two = polygons_to_shape([np.array([[0, 0], [4, 0], [4, 4]], float), np.array([[10, 10], [14, 10], [14, 14]], float)])
    assert isinstance(two.geom, MultiPolygon) and len(two.geom.geoms) == 2 and two.repaired is None
    assert two.geom.area == pytest.approx(16)


def test_overlapping_parts_are_unioned():
    shape = polygons_to_shape([np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float),
                               np.array([[5, 0], [15, 0], [15, 10], [5, 10]], float)])
    assert isinstance(shape.geom, Polygon) and shape.geom.area == pytest.approx(150)


@pytest.mark.parametrize(
    "polys",
    [
        [np.array([[0, 0], [5, 5], [10, 10]], float)],  # collinear
        [np.array([[3, 3], [3, 3], [3, 3]], float)],  # one point repeated
        [np.array([[0, 0], [10, 0], [0, 0]], float), np.array([[1, 1], [2, 2], [3, 3]], float)],
    ],
)
def test_zero_area_is_rejected(polys):
    with pytest.raises(GeometryError, match="zero area") as err:
        polygons_to_shape(polys)
    assert err.value.kind == "polygon-degenerate"


def test_degenerate_part_next_to_a_good_one_is_dropped():
    shape = polygons_to_shape([np.array([[0, 0], [5, 5], [10, 10]], float), np.array([[20, 20], [30, 20], [30, 30]], float)])
    assert shape.geom.area == pytest.approx(50) and shape.repaired


# ---------------------------------------------------------------- clip_to_window

WIN = Window(100, 100, 200, 200)  # pixel centres 100..199


def test_window_box_spans_pixel_centres():
    assert window_box(WIN).bounds == (100, 100, 199, 199)


def test_clip_inside_is_unchanged_but_translated():
    tri = Polygon([(120, 120), (150, 120), (150, 150)])
    got, truncated = clip_to_window(tri, WIN, 1.0)
    assert truncated is False
    assert got.bounds == (20, 20, 50, 50) and got.area == pytest.approx(tri.area)
    assert got.equals(Polygon([(20, 20), (50, 20), (50, 50)]))


def test_clip_touching_the_window_edge_from_inside_is_not_truncated():
    got, truncated = clip_to_window(box(100, 100, 199, 150), WIN, 1.0)
    assert truncated is False and got.bounds == (0, 0, 99, 50)


@pytest.mark.parametrize(
    "shape, bounds",
    [
        (box(50, 120, 150, 160), (0, 20, 50, 60)),  # across the left edge
        (box(150, 120, 300, 160), (50, 20, 99, 60)),  # across the right edge: last centre is 199 -> 99
        (box(120, 50, 160, 150), (20, 0, 60, 50)),  # across the top
        (box(120, 150, 160, 400), (20, 50, 60, 99)),  # across the bottom
        (box(0, 0, 400, 400), (0, 0, 99, 99)),  # covers the window
    ],
)
def test_clip_crossing_is_truncated_and_cut_to_the_window(shape, bounds):
    got, truncated = clip_to_window(shape, WIN, 1.0)
    assert truncated is True
    assert got.bounds == pytest.approx(bounds)
    expected = shape.intersection(window_box(WIN))
    assert got.area == pytest.approx(expected.area)


def test_clip_of_a_shape_split_in_two_stays_a_multipolygon():
    u_shape = Polygon([(110, 50), (190, 50), (190, 150), (170, 150), (170, 80), (130, 80), (130, 150), (110, 150)])
    assert u_shape.is_valid  # its base lies above the window: the two prongs enter it apart
    split, truncated = clip_to_window(u_shape, WIN, 1.0)
    assert truncated and isinstance(split, MultiPolygon) and len(split.geoms) == 2
    assert sorted(p.bounds for p in split.geoms) == [(10, 0, 30, 50), (70, 0, 90, 50)]
    assert split.area == pytest.approx(2 * 20 * 50)


def test_clip_of_an_inside_multipolygon_stays_a_multipolygon():
    mp = MultiPolygon([box(110, 110, 120, 120), box(150, 150, 170, 170)])
    got, truncated = clip_to_window(mp, WIN, 1.0)
    assert not truncated and isinstance(got, MultiPolygon) and got.area == pytest.approx(500)


def test_slivers_are_dropped():
    sliver = box(50, 120, 100.2, 190)  # 0.2 px x 70 px = 14 px^2 inside the window
    assert clip_to_window(sliver, WIN, min_fragment_area=16.0) is None
    kept, truncated = clip_to_window(sliver, WIN, min_fragment_area=10.0)
    assert truncated and kept.area == pytest.approx(14.0)


def test_sliver_piece_of_a_split_shape_is_dropped_and_the_rest_kept():
    # a U whose left prong enters the window 0.25 px wide (0.25 x 50 = 12.5 px^2), right prong 20 px wide
    u_shape = Polygon([(99.75, 50), (190, 50), (190, 150), (170, 150), (170, 80), (100.25, 80), (100.25, 150),
                       (99.75, 150)])
    assert u_shape.is_valid
    got, truncated = clip_to_window(u_shape, WIN, min_fragment_area=16.0)
    assert truncated and isinstance(got, Polygon)
    assert got.bounds == pytest.approx((70, 0, 90, 50))


def test_clip_outside_or_touching_only_is_none():
    assert clip_to_window(box(300, 300, 350, 350), WIN, 0.0) is None
    assert clip_to_window(box(50, 120, 100, 150), WIN, 0.0) is None  # shares only the x = 100 edge


def test_clip_small_inside_object_below_min_fragment_area_is_none():
    assert clip_to_window(box(120, 120, 123, 123), WIN, min_fragment_area=16.0) is None  # 9 px^2


# ---------------------------------------------------------------- rasterize


def test_rasterize_polygon_with_a_hole_leaves_the_hole_empty():
    ring = Polygon([(10, 10), (40, 10), (40, 40), (10, 40)], holes=[[(20, 20), (30, 20), (30, 30), (20, 30)]])
    crop, x0, y0 = rasterize(ring, 100, 100)
    assert (x0, y0) == (10, 10) and crop.shape == (31, 31) and crop.dtype == bool
    assert not crop[21 - 10 : 30 - 10, 21 - 10 : 30 - 10].any()  # the hole's inside pixels
    assert crop[0, :].all() and crop[:, 0].all() and crop[-1, :].all() and crop[:, -1].all()  # the outer ring
    assert crop[5, 5] and crop[15, 5]
    assert abs(int(crop.sum()) - ring.area) <= ring.length


@pytest.mark.parametrize(
    "geom",
    [
        box(3, 4, 60, 30),
        Polygon([(5, 5), (80, 12), (30, 70)]),
        Point(50, 50).buffer(20),
        Point(40.3, 55.7).buffer(7.5),
        Polygon([(10, 10), (70, 10), (70, 70), (50, 70), (50, 30), (30, 30), (30, 70), (10, 70)]),  # concave U
    ],
)
def test_rasterize_area_is_near_the_shapely_area(geom):
    crop, x0, y0 = rasterize(geom, 100, 100)
    assert abs(int(crop.sum()) - geom.area) <= geom.length
    minx, miny, maxx, maxy = geom.bounds
    assert (x0, y0) == (math.floor(minx), math.floor(miny))
    assert crop.shape == (math.ceil(maxy) + 1 - y0, math.ceil(maxx) + 1 - x0)
    # every filled pixel lies within a pixel of the polygon
    ys, xs = np.nonzero(crop)
    far = [(x + x0, y + y0) for x, y in zip(xs, ys) if geom.distance(Point(x + x0, y + y0)) > 1.0]
    assert far == []


def test_rasterize_returns_the_crop_offset():
    crop, x0, y0 = rasterize(box(30, 40, 35, 42), 100, 100)
    assert (x0, y0) == (30, 40) and crop.shape == (3, 6) and crop.all()
    crop, x0, y0 = rasterize(box(30.2, 40.7, 35.1, 42.3), 100, 100)
    assert (x0, y0) == (30, 40)


def test_rasterize_clips_to_the_canvas():
    crop, x0, y0 = rasterize(box(90, 90, 120, 120), 100, 100)
    assert (x0, y0, crop.shape) == (90, 90, (10, 10)) and crop.all()
    crop, x0, y0 = rasterize(box(-10, -5, 9, 4), 50, 60)
    assert (x0, y0, crop.shape) == (0, 0, (5, 10)) and crop.all()
    crop, x0, y0 = rasterize(box(10, 20, 80, 30), 40, 50)  # height 40, width 50: x clipped at 50
    assert (x0, y0, crop.shape) == (10, 20, (11, 40)) and crop.all()


def test_rasterize_outside_the_canvas_is_none():
    assert rasterize(box(120, 120, 150, 150), 100, 100) is None
    assert rasterize(box(-30, -30, -10, -10), 100, 100) is None


def test_rasterize_multipolygon_fills_every_part():
    mp = MultiPolygon([box(0, 0, 4, 4), box(20, 10, 24, 14)])
    crop, x0, y0 = rasterize(mp, 100, 100)
    assert (x0, y0, crop.shape) == (0, 0, (15, 25))
    assert crop[0:5, 0:5].all() and crop[10:15, 20:25].all() and int(crop.sum()) == 50


def test_rasterize_island_inside_a_hole_survives_in_any_part_order():
    ring = Polygon([(0, 0), (40, 0), (40, 40), (0, 40)], holes=[[(10, 10), (30, 10), (30, 30), (10, 30)]])
    island = box(15, 15, 25, 25)
    a = rasterize(MultiPolygon([ring, island]), 100, 100)[0]
    b = rasterize(MultiPolygon([island, ring]), 100, 100)[0]
    assert a[20, 20] and (a == b).all()


def test_rasterize_of_repaired_donut_with_island_keeps_the_island():
    donut = np.array([[0, 0], [40, 0], [40, 40], [0, 40], [0, 20], [10, 20], [10, 30], [30, 30], [30, 10], [10, 10],
                      [10, 20], [0, 20]], float)  # keyhole polygon: repaired into a square with a hole
    island = np.array([[15, 15], [25, 15], [25, 25], [15, 25]], float)
    shape = polygons_to_shape([island, donut])
    assert shape.geom.area == pytest.approx(1600 - 400 + 100)
    crop, x0, y0 = rasterize(shape.geom, 100, 100)
    assert crop[20 - y0, 20 - x0]


@pytest.mark.parametrize(
    "seg, kind, fragment",
    [
        ([[[1, 1, 5, 1, 5, 5]]], "polygon-not-numeric", "nested deeper"),
        ([[1, 1, 10**400, 1, 5, 5]], "polygon-out-of-bounds", "too large"),
        ([{"size": [10, 10], "counts": "1"}], "segmentation-invalid", "RLE"),
        ([[1, 1, True, 1, 5, 5]], "polygon-not-numeric", "flat list"),
    ],
)
def test_parse_coco_polygons_refuses_what_coco_does_not_allow(seg, kind, fragment):
    with pytest.raises(GeometryError, match=fragment) as exc:
        parse_coco_polygons(seg, 100, 100, 2.0)
    assert exc.value.kind == kind
