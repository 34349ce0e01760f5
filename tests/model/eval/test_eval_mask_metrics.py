"""Mask metrics as pure functions: IoU, GLaMM's greedy pairing and recall loop, AP50 through COCOeval."""

from __future__ import annotations

import numpy as np
import pytest

from model.eval import mask_metrics as mm
from tests.model.eval.evalkit import rle


def test_iou_matrix_matches_hand_computed_overlaps():
    a = rle([(10, 10, 30, 30)])  # 400 px
    b = rle([(20, 10, 40, 30)])  # shifted by 10: overlap 200, union 600
    c = rle([(60, 60, 70, 70)])
    m = mm.iou_matrix([a, b], [a, b, c])
    assert m.shape == (2, 3)
    assert m[0, 0] == 1.0 and m[0, 1] == pytest.approx(1 / 3) and m[0, 2] == 0.0
    assert mm.iou_matrix([], [a]).shape == (0, 1) and mm.iou_matrix([a], []).shape == (1, 0)


def test_greedy_pairing_is_glamms_not_the_optimal_assignment():
    # rows = predictions, cols = true masks. Greedy takes 0.9 first, leaving (1, 1) = 0: one pair, mIoU 0.9.
    # An optimal assignment would pair 0.8 + 0.85 instead; GLaMM's protocol is greedy.
    ious = np.array([[0.9, 0.8], [0.85, 0.0]])
    pairs = mm.greedy_pairs(ious)
    assert pairs == [(0, 0, 0.9)]
    assert mm.image_miou(pairs) == pytest.approx(0.9)
    assert mm.image_miou([]) == 0.0


def test_greedy_pairing_removes_rows_and_columns_and_keeps_original_indices():
    ious = np.array([[0.2, 0.7, 0.0], [0.6, 0.65, 0.0], [0.0, 0.1, 0.3]])
    # 0.7 at (0,1); then best of rows {1,2} x cols {0,2}: 0.6 at (1,0); then (2,2) 0.3
    assert mm.greedy_pairs(ious) == [(0, 1, 0.7), (1, 0, 0.6), (2, 2, 0.3)]
    assert mm.image_miou(mm.greedy_pairs(ious)) == pytest.approx((0.7 + 0.6 + 0.3) / 3)


def test_ties_go_to_the_first_pair_in_row_major_order_like_numpy_argmax():
    ious = np.array([[0.5, 0.5], [0.5, 0.5]])
    assert mm.greedy_pairs(ious) == [(0, 0, 0.5), (1, 1, 0.5)]


def test_recall_glamm_stops_at_the_first_best_iou_pair_that_fails_a_threshold():
    # true phrases (rows) x predicted phrases (cols)
    ious = np.array([[0.95, 0.0], [0.0, 0.8]])
    sims = np.array([[0.2, 0.0], [0.0, 0.9]])  # the best-IoU pair has a dissimilar phrase
    assert mm.recall_matches(ious, sims, 0.5, 0.5, "glamm") == []
    assert mm.recall_matches(ious, sims, 0.5, 0.5, "admissible") == [(1, 1)]


def test_recall_needs_both_thresholds_and_is_one_to_one():
    ious = np.array([[0.9, 0.85], [0.88, 0.4]])
    sims = np.ones((2, 2))
    # 0.9 at (0,0); then row 1 x col 1: 0.4 < 0.5 -> stop
    assert mm.recall_matches(ious, sims) == [(0, 0)]
    assert mm.recall_matches(ious, sims, iou_threshold=0.3) == [(0, 0), (1, 1)]
    assert mm.recall_matches(ious, np.full((2, 2), 0.49)) == []
    assert mm.recall_matches(np.zeros((0, 2)), np.zeros((0, 2))) == []
    with pytest.raises(ValueError, match="recall matching"):
        mm.recall_matches(ious, sims, mode="best")


A, B, C = rle([(10, 10, 30, 30)]), rle([(50, 50, 60, 60), (70, 50, 80, 60)]), rle([(10, 60, 30, 90)])
D, E = rle([(40, 40, 90, 60)]), rle([(60, 70, 80, 95)])


def test_ap50_perfect_and_empty():
    gt = [[A, B, C], [D, E]]
    assert mm.ap50(gt, gt) == pytest.approx(1.0)
    assert mm.ap50(gt, [[], []]) == 0.0
    assert mm.ap50([[], []], [[A], []]) is None  # no true mask: undefined


def test_ap50_missing_mask_is_51_or_84_of_101_recall_points():
    # 101-point interpolated precision: 1.0 up to the highest recall reached, 0 beyond it
    assert mm.ap50([[A, B]], [[A]]) == pytest.approx(51 / 101)
    gt = [[A, B, C], [D, E, C]]
    assert mm.ap50(gt, [[A, C], [D, E, C]]) == pytest.approx(84 / 101)  # recall 5/6 reached at precision 1


def test_ap50_duplicate_prediction_is_a_false_positive():
    # detections T F T T T T T (all score 1.0, kept in order): precision 1 at recall 1/6, then 6/7 up to recall 1
    gt = [[A, B, C], [D, E, C]]
    pred = [[A, A, B, C], [D, E, C]]
    assert mm.ap50(gt, pred) == pytest.approx((17 + 84 * 6 / 7) / 101)


def test_ap50_half_overlap_is_below_the_threshold_and_a_swap_does_not_matter():
    shifted = rle([(20, 10, 40, 30)])  # IoU 1/3 with A
    assert mm.ap50([[A]], [[shifted]]) == 0.0
    assert mm.ap50([[A, C]], [[C, A]]) == pytest.approx(1.0)  # AP ignores which phrase a mask came with


def test_ap50_split_ignores_the_other_kind_like_coco_crowd_regions():
    gt = [[A, B, C], [D, E, C]]
    pred = [[A, C], [D, E, C]]  # B (multi-object, image 1) missing
    single = [[True, False, True], [False, True, True]]  # B and D are the multi-object phrases
    multi = [[not k for k in row] for row in single]
    assert mm.ap50(gt, pred, single) == pytest.approx(1.0)  # D's hit is ignored, not a false positive
    assert mm.ap50(gt, pred, multi) == pytest.approx(51 / 101)  # B missed, D found
    assert mm.ap50(gt, [[A, C, rle([(0, 95, 5, 100)])], [D, E, C]], single) == pytest.approx(
        (51 + 50 * 4 / 5) / 101)  # a stray mask is a false positive in each split: T T F T T over 4 kept


def test_ap50_agrees_with_cocoeval_summarize():
    """The AP50 read from COCOeval's precision array is the number its own summary prints."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from pipeline.contracts import masks as rle_ops

    gt, pred = [[A, B, C], [D, E]], [[A, rle([(20, 10, 40, 30)]), C], [E, D, rle([(0, 0, 5, 5)])]]
    images, anns, dets = [], [], []
    for i, (g, p) in enumerate(zip(gt, pred), start=1):
        images.append({"id": i, "height": 100, "width": 100})
        for r in g:
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1, "segmentation": r, "iscrowd": 0,
                         "area": float(rle_ops.area(r)), "bbox": list(rle_ops.bbox(r))})
        dets += [{"image_id": i, "category_id": 1, "segmentation": r, "score": 1.0} for r in p]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "x"}]}
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets), "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert mm.ap50(gt, pred) == pytest.approx(ev.stats[1])
    assert 0 < ev.stats[1] < 1
