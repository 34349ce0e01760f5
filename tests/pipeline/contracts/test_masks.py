"""RLE helpers against pycocotools, the reference for COCO masks."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as M

from pipeline.contracts import masks


def _reference(full: np.ndarray) -> dict:
    return M.encode(np.asfortranarray(full.astype(np.uint8)))


def _canvas(crop: np.ndarray, x0: int, y0: int, h: int, w: int) -> np.ndarray:
    full = np.zeros((h, w), np.uint8)
    full[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop
    return full


def _uncompressed(full: np.ndarray) -> dict:
    """COCO's uncompressed RLE (counts as a list, column-major, starting with a background run), by hand."""
    runs, cur, n = [], 0, 0
    for v in full.ravel(order="F"):
        if v != cur:
            runs.append(n)
            cur, n = v, 0
        n += 1
    runs.append(n)
    return {"size": list(full.shape), "counts": runs}


def _assert_same_as_pycocotools(crop, x0, y0, h, w):
    full = _canvas(crop, x0, y0, h, w)
    rle = masks.crop_to_rle(crop, x0, y0, h, w)
    ref = _reference(full)
    assert isinstance(rle["counts"], str)
    assert rle["size"] == [h, w]
    assert rle["counts"] == ref["counts"].decode("ascii")
    assert (masks.decode(rle) == full).all()
    assert masks.area(rle) == int(full.sum())


# ---------------------------------------------------------------- crop_to_rle


def random_placement(rng, lo: int, hi: int):
    """(canvas h, w, crop h, w, crop x0, y0): a crop somewhere inside a canvas of sides in [lo, hi)."""
    h, w = (int(v) for v in rng.integers(lo, hi, 2))
    ch, cw = int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1))
    return h, w, ch, cw, int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))


def test_crop_to_rle_equals_full_canvas_encoding_randomised():
    rng = np.random.default_rng(20240607)
    for _ in range(600):
        h, w, ch, cw, x0, y0 = random_placement(rng, 1, 48)
        crop = rng.random((ch, cw)) < rng.random()
        if rng.random() < 0.3:  # empty columns inside the crop
            crop[:, rng.random(cw) < 0.5] = False
        if rng.random() < 0.2:  # empty rows inside the crop
            crop[rng.random(ch) < 0.5, :] = False
        _assert_same_as_pycocotools(crop, x0, y0, h, w)


@pytest.mark.parametrize("h, w", [(7, 11), (11, 7), (1, 9), (9, 1), (1, 1)])
def test_crop_to_rle_crops_touching_every_edge(h, w):
    rng = np.random.default_rng(h * 100 + w)
    placements = []
    for ch in {1, max(h // 2, 1), h}:
        for cw in {1, max(w // 2, 1), w}:
            for x0 in {0, w - cw, (w - cw) // 2}:
                for y0 in {0, h - ch, (h - ch) // 2}:
                    placements.append((ch, cw, x0, y0))
    for ch, cw, x0, y0 in placements:
        for crop in (np.ones((ch, cw), bool), np.zeros((ch, cw), bool), rng.random((ch, cw)) < 0.5):
            _assert_same_as_pycocotools(crop, x0, y0, h, w)
            # pixels at the crop's own corners: first and last run of the band are foreground
            c = crop.copy()
            c[0, 0] = c[-1, -1] = True
            _assert_same_as_pycocotools(c, x0, y0, h, w)


def test_crop_to_rle_full_canvas_crop():
    crop = np.ones((13, 17), bool)
    _assert_same_as_pycocotools(crop, 0, 0, 13, 17)
    assert masks.area(masks.crop_to_rle(crop, 0, 0, 13, 17)) == 13 * 17


def test_crop_to_rle_empty_columns_at_both_ends_of_the_crop():
    crop = np.zeros((5, 6), bool)
    crop[1:4, 2:4] = True  # columns 0, 1, 4, 5 of the crop are empty
    _assert_same_as_pycocotools(crop, 3, 2, 10, 12)
    rle = masks.crop_to_rle(crop, 3, 2, 10, 12)
    assert masks.bbox(rle) == (5.0, 3.0, 2.0, 3.0)


def test_crop_to_rle_accepts_uint8_crops():
    crop = np.zeros((4, 4), np.uint8)
    crop[1:3, 1:3] = 1
    _assert_same_as_pycocotools(crop, 6, 1, 8, 12)


def test_crop_to_rle_by_hand():
    # 3 x 4 canvas, one pixel at (x=1, y=2): column-major runs 5 background, 1 foreground, 6 background
    rle = masks.crop_to_rle(np.ones((1, 1), bool), 1, 2, 3, 4)
    assert M.decode(masks.to_coco(rle)).tolist() == [[0, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0]]
    assert masks.area(rle) == 1 and masks.bbox(rle) == (1.0, 2.0, 1.0, 1.0)


# ---------------------------------------------------------------- area, bbox, union, iou, decode


def _rect(x0, y0, w, h, H=50, W=60):
    return masks.crop_to_rle(np.ones((h, w), bool), x0, y0, H, W)


def test_area_bbox_decode_by_hand():
    r = _rect(5, 7, 10, 4)
    assert masks.area(r) == 40
    assert masks.bbox(r) == (5.0, 7.0, 10.0, 4.0)
    d = masks.decode(r)
    assert d.shape == (50, 60) and d.dtype == np.uint8
    assert d[7:11, 5:15].all() and d.sum() == 40


def test_union_of_overlapping_masks():
    a, b = _rect(0, 0, 10, 10), _rect(5, 0, 10, 10)
    u = masks.union([a, b])
    assert isinstance(u["counts"], str) and u["size"] == [50, 60]
    assert masks.area(u) == 150  # 100 + 100 - 50 shared
    assert masks.bbox(u) == (0.0, 0.0, 15.0, 10.0)
    assert (masks.decode(u) == (masks.decode(a) | masks.decode(b))).all()


def test_union_of_disjoint_masks_adds_areas_and_matches_pycocotools():
    parts = [_rect(0, 0, 3, 3), _rect(20, 30, 5, 2), _rect(55, 45, 5, 5)]
    u = masks.union(parts)
    assert masks.area(u) == 9 + 10 + 25
    assert masks.bbox(u) == (0.0, 0.0, 60.0, 50.0)
    ref = M.merge([masks.to_coco(p) for p in parts], intersect=False)
    assert u["counts"] == ref["counts"].decode("ascii")


def test_union_of_one_mask_is_an_equal_copy():
    a = _rect(1, 2, 3, 4)
    u = masks.union([a])
    assert u == a and u is not a


def test_iou_by_hand():
    a, b = _rect(0, 0, 10, 10), _rect(5, 0, 10, 10)
    assert masks.iou(a, b) == pytest.approx(50 / 150)
    assert masks.iou(a, a) == pytest.approx(1.0)
    assert masks.iou(a, _rect(30, 30, 5, 5)) == 0.0
    inner = _rect(2, 2, 4, 4)  # inside a
    assert masks.iou(a, inner) == pytest.approx(16 / 100)


def test_to_coco_and_from_coco_round_trip():
    a = _rect(1, 2, 3, 4)
    c = masks.to_coco(a)
    assert isinstance(c["counts"], bytes) and masks.from_coco(c) == a
    assert masks.to_coco(c) == c  # bytes stay bytes


# ---------------------------------------------------------------- full_image_rle_to_crop


def _two_blobs():
    full = np.zeros((30, 40), np.uint8)
    full[5:9, 10:20] = 1
    full[12:14, 25:27] = 1  # a second blob below right: the crop spans both with empty space between
    return full


def test_full_image_rle_to_crop_reads_compressed_bytes_str_and_list_counts():
    full = _two_blobs()
    compressed = _reference(full)
    as_str = masks.from_coco(compressed)
    listed = _uncompressed(full)
    assert sum(listed["counts"]) == 30 * 40
    for rle in (compressed, as_str, listed):
        got = masks.full_image_rle_to_crop(rle, 30, 40)
        assert got is not None
        crop, x0, y0 = got
        assert (x0, y0, crop.shape) == (10, 5, (9, 17))
        assert crop.dtype == bool
        assert (crop == full[5:14, 10:27].astype(bool)).all()
        assert crop.sum() == full.sum()


def test_full_image_rle_to_crop_list_counts_starting_with_foreground():
    full = np.zeros((6, 5), np.uint8)
    full[0:2, 0] = 1  # first pixel set: the list starts with a zero-length background run
    full[5, 4] = 1  # last pixel set
    listed = _uncompressed(full)
    assert listed["counts"][0] == 0
    crop, x0, y0 = masks.full_image_rle_to_crop(listed, 6, 5)
    assert (x0, y0, crop.shape) == (0, 0, (6, 5))
    assert (crop == full.astype(bool)).all()


def test_full_image_rle_to_crop_of_an_empty_mask_is_none():
    empty = np.zeros((8, 9), np.uint8)
    assert masks.full_image_rle_to_crop(_reference(empty), 8, 9) is None
    assert masks.full_image_rle_to_crop(_uncompressed(empty), 8, 9) is None


def test_full_image_rle_to_crop_inverts_crop_to_rle():
    rng = np.random.default_rng(3)
    for _ in range(100):
        h, w, ch, cw, x0, y0 = random_placement(rng, 2, 30)
        crop = rng.random((ch, cw)) < 0.6
        crop[0, int(rng.integers(cw))] = crop[-1, int(rng.integers(cw))] = True
        crop[int(rng.integers(ch)), 0] = crop[int(rng.integers(ch)), -1] = True  # tight bounding box
        back = masks.full_image_rle_to_crop(masks.crop_to_rle(crop, x0, y0, h, w), h, w)
        assert back is not None
        got, gx, gy = back
        assert (gx, gy) == (x0, y0) and (got == crop).all()


# ---------------------------------------------------------------- rle_problem, compressed_counts


def _runs_to_mask(runs, h, w):
    flat = np.zeros(h * w, np.uint8)
    pos, v = 0, 0
    for n in runs:
        flat[pos : pos + n] = v
        pos, v = pos + n, 1 - v
    return flat.reshape((w, h)).T


def test_compressed_counts_agree_with_pycocotools_randomised():
    rng = np.random.default_rng(12)
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        full = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        ref = _reference(full)
        runs = masks.compressed_counts(ref["counts"])
        assert sum(runs) == h * w and min(runs) >= 0
        assert (_runs_to_mask(runs, h, w) == full).all()
        assert masks.rle_problem(ref, h, w) is None and masks.rle_problem(masks.from_coco(ref)) is None


@pytest.mark.parametrize(
    "rle, fragment",
    [
        ({"size": [4, 4], "counts": ""}, "cover 0 pixels"),  # pycocotools decodes this from uninitialised memory
        ({"size": [4, 4], "counts": "garbage!!"}, "not an RLE character"),
        ({"size": [4, 4], "counts": "0"}, "cover 0 pixels"),
        ({"size": [4, 4], "counts": "o"}, "ends inside a run length"),
        ({"size": [4, 4], "counts": [3, 100, 2]}, "cover 105 pixels"),
        ({"size": [4, 4], "counts": [-1, 17]}, "run length of -1"),
        ({"size": [4, 4], "counts": [16.0]}, "other than integers"),
        ({"size": [4, 4], "counts": [True] * 16}, "other than integers"),
        ({"size": [4, 4], "counts": None}, "compressed string or a list"),
        ({"size": [4, 4], "counts": {"a": 1}}, "compressed string or a list"),
        ({"size": [4], "counts": [16]}, "two positive integers"),
        ({"size": [0, 4], "counts": [0]}, "two positive integers"),
        ({"size": [True, 4], "counts": [4]}, "two positive integers"),
        ({"size": "4x4", "counts": [16]}, "two positive integers"),
        ({"size": [2**40, 1], "counts": [2**40]}, "two positive integers"),
        ([4, 4], "not an object"),
    ],
)
def test_rle_problem_names_each_malformation(rle, fragment):
    problem = masks.rle_problem(rle)
    assert problem is not None and fragment in problem


def test_rle_problem_checks_the_image_size_and_accepts_valid_lists():
    full = _two_blobs()
    assert masks.rle_problem(_uncompressed(full), 30, 40) is None
    assert "differs from the image's [40, 30]" in masks.rle_problem(_uncompressed(full), 40, 30)
