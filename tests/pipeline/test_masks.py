"""RLE helpers against pycocotools, the reference for COCO masks."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as M

from pipeline import masks


def test_crop_to_rle_equals_full_canvas_encoding():
    rng = np.random.default_rng(7)
    for _ in range(400):
        H, W = (int(v) for v in rng.integers(1, 40, 2))
        ch, cw = int(rng.integers(1, H + 1)), int(rng.integers(1, W + 1))
        x0, y0 = int(rng.integers(0, W - cw + 1)), int(rng.integers(0, H - ch + 1))
        crop = rng.random((ch, cw)) < rng.random()
        full = np.zeros((H, W), np.uint8)
        full[y0 : y0 + ch, x0 : x0 + cw] = crop
        rle = masks.crop_to_rle(crop, x0, y0, H, W)
        assert rle["counts"] == M.encode(np.asfortranarray(full))["counts"].decode()
        assert (masks.decode(rle) == full).all() and masks.area(rle) == int(full.sum())


def test_union_bbox_iou_by_hand():
    a = masks.crop_to_rle(np.ones((10, 10), bool), 0, 0, 50, 50)
    b = masks.crop_to_rle(np.ones((10, 10), bool), 5, 0, 50, 50)
    u = masks.union([a, b])
    assert masks.area(u) == 150 and masks.bbox(u) == (0.0, 0.0, 15.0, 10.0)
    assert abs(masks.iou(a, b) - 50 / 150) < 1e-9


def test_full_image_rle_to_crop_reads_both_rle_forms():
    full = np.zeros((30, 40), np.uint8)
    full[5:9, 10:20] = 1
    compressed = M.encode(np.asfortranarray(full))
    runs, flat, cur, n = [], full.ravel(order="F"), 0, 0
    for v in flat:
        if v != cur:
            runs.append(n)
            cur, n = v, 0
        n += 1
    runs.append(n)
    for rle in (compressed, {"size": [30, 40], "counts": runs}):
        crop, x0, y0 = masks.full_image_rle_to_crop(rle, 30, 40)
        assert (x0, y0, crop.shape) == (10, 5, (4, 10)) and crop.all()
