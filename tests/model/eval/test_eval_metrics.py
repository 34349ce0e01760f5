"""Hand-computed cases of every metric through `score`: perfect, empty, a swapped mask, a missing phrase,
a duplicate, a shifted mask. Two 100x100 images, three true phrases each (tests/model/eval/evalkit.py):
image 1: tennis court (1 object), small vehicles (2), ship (1); image 2: storage tanks (2), harbor, plane."""

from __future__ import annotations

import pytest

from model.eval.run import EvalSettings, score
from tests.model.eval.evalkit import SCENES, empty_image, gt_images, scene_image

I1, I2 = sorted(SCENES)


@pytest.fixture
def run(java, embedder):
    def _run(pred: dict, **settings):
        return score(gt_images(), pred, EvalSettings(**settings), embedder)
    return _run


def test_perfect_prediction_gives_every_maximum(run):
    r = run(gt_images())
    m = r.metrics
    assert m["meteor"] == pytest.approx(100.0)
    # CIDEr-D is 10 per image (x100) when every n-gram order has an n-gram the other reference lacks
    assert m["cider"] == pytest.approx(1000.0, rel=1e-6)
    for key in ("ap50", "miou", "recall", "miou_strict"):
        assert m[key] == pytest.approx(100.0), key
    for grp, n in (("single", 4), ("multi", 2)):
        b = r.by_objects[grp]
        assert b["phrases"] == n and b["images"] == 2
        assert b["ap50"] == pytest.approx(100.0) and b["miou"] == pytest.approx(100.0) and b["recall"] == 100.0
    assert r.counts == {"images": 2, "gt_phrases": 6, "pred_phrases": 6, "gt_single": 4, "gt_multi": 2,
                        "gt_unknown_objects": 0, "empty_predictions": 0}
    assert [row["recalled"] for row in r.per_image] == [3, 3]
    assert all(p["recalled"] and p["iou"] == pytest.approx(100.0) and p["similarity"] == pytest.approx(1.0)
               for p in r.per_phrase)


def test_empty_prediction_gives_zero(run):
    r = run({i: empty_image(i) for i in SCENES})
    for key in ("meteor", "cider", "ap50", "miou", "recall", "miou_strict"):
        assert r.metrics[key] == 0.0, key
    for grp in ("single", "multi"):
        assert r.by_objects[grp]["ap50"] == 0.0 and r.by_objects[grp]["miou"] == 0.0
        assert r.by_objects[grp]["recall"] == 0.0
    assert r.counts["empty_predictions"] == 2 and r.counts["pred_phrases"] == 0
    assert all(not p["recalled"] and p["pred_index"] is None for p in r.per_phrase)


def test_one_swapped_mask_keeps_mask_metrics_and_loses_recall(run):
    # image 1: "tennis court" carries the vehicles' mask and "small vehicles" the court's
    pred = gt_images()
    pred[I1] = scene_image(I1, masks_from=[1, 0, 2])
    r = run(pred)
    assert r.metrics["miou"] == pytest.approx(100.0)  # pairing by IoU alone: every mask still pairs at 1.0
    assert r.metrics["ap50"] == pytest.approx(100.0)  # AP ignores the phrase text
    assert r.metrics["meteor"] == pytest.approx(100.0)
    # GLaMM's loop: image 1's best-IoU pair (true "tennis court", predicted "small vehicles") fails the phrase
    # similarity, which ends image 1's search: 0 of 3 there (not even the correct ship), 3 of 3 in image 2
    assert r.metrics["recall"] == pytest.approx(50.0)
    assert r.by_objects["single"]["recall"] == pytest.approx(50.0)  # 0/2 + 2/2
    assert r.by_objects["multi"]["recall"] == pytest.approx(50.0)  # 0/1 + 1/1
    assert [row["recalled"] for row in r.per_image] == [0, 3]
    # admissible matching still recalls image 1's ship
    r2 = run(pred, recall_matching="admissible")
    assert r2.metrics["recall"] == pytest.approx(400 / 6)
    assert r2.by_objects["single"]["recall"] == pytest.approx(75.0)


def test_one_missing_phrase(run):
    pred = gt_images()
    pred[I1] = scene_image(I1, order=[0, 2])  # no "small vehicles" phrase (the multi-object one)
    r = run(pred)
    m = r.metrics
    assert m["miou"] == pytest.approx(100.0)  # GLaMM's mIoU averages the pairs only
    assert m["miou_strict"] == pytest.approx((200 / 3 + 100) / 2)  # image 1: 2 of 3 masks paired
    assert m["recall"] == pytest.approx(500 / 6)
    assert m["ap50"] == pytest.approx(100 * 84 / 101)  # 5 of 6 found at precision 1: 84 of 101 recall points
    assert r.by_objects["single"]["recall"] == pytest.approx(100.0)
    assert r.by_objects["multi"]["recall"] == pytest.approx(50.0)
    assert r.by_objects["single"]["ap50"] == pytest.approx(100.0)
    assert r.by_objects["multi"]["ap50"] == pytest.approx(100 * 51 / 101)
    assert r.by_objects["multi"]["miou"] == pytest.approx(50.0)  # image 1 has no pair for its multi phrase: 0
    assert m["meteor"] < 100 and m["cider"] < 1000
    row = r.per_image[0]
    assert row["image_id"] == I1 and row["recalled"] == 2 and row["recall"] == pytest.approx(200 / 3)
    assert row["recalled_multi"] == 0 and row["miou_multi"] == 0.0
    missed = [p for p in r.per_phrase if not p["recalled"]]
    assert [(p["image_id"], p["phrase"]) for p in missed] == [(I1, "small vehicles")]


def test_duplicate_prediction(run):
    pred = gt_images()
    pred[I1] = scene_image(I1, order=[0, 0, 1, 2])  # "tennis court" said twice with the same mask
    r = run(pred)
    m = r.metrics
    assert m["miou"] == pytest.approx(100.0)  # the duplicate overlaps nothing left: unpaired, not counted
    assert m["miou_strict"] == pytest.approx((75 + 100) / 2)  # image 1: 3 pairs over 3 + 4 - 3 masks
    assert m["recall"] == pytest.approx(100.0)  # one to one: the duplicate recalls nothing more
    assert m["ap50"] == pytest.approx(100 * (17 + 84 * 6 / 7) / 101)  # T F T T T T T
    assert r.per_image[0]["unpaired_pred"] == 1 and r.counts["pred_phrases"] == 7


def test_shifted_mask_gives_its_hand_computed_iou(run):
    # the court shifted 10 px right: overlap 200 px, union 600 px, IoU 1/3 (below AP50's and Recall's 0.5)
    pred = gt_images()
    pred[I1] = scene_image(I1, boxes_override={0: [(20, 10, 40, 30)]})
    r = run(pred)
    assert r.per_image[0]["miou"] == pytest.approx(100 * (1 / 3 + 1 + 1) / 3)
    assert r.metrics["miou"] == pytest.approx((100 * (1 / 3 + 2) / 3 + 100) / 2)
    assert r.by_objects["single"]["miou"] == pytest.approx(100 * ((1 / 3 + 1) / 2 + 1) / 2)
    assert r.metrics["recall"] == pytest.approx(500 / 6)
    # AP50: image 1 detections F T T, image 2 T T T: precision 5/6 from recall 1/6 up to 5/6
    assert r.metrics["ap50"] == pytest.approx(100 * 84 * 5 / 6 / 101)
    court = r.per_phrase[0]
    assert court["phrase"] == "tennis court" and court["iou"] == pytest.approx(100 / 3) and not court["recalled"]


def test_similarity_threshold_is_a_setting(run):
    pred = gt_images()
    pred[I1] = scene_image(I1, masks_from=[1, 0, 2])
    lax = run(pred, similarity_threshold=-1.0)
    assert lax.metrics["recall"] == pytest.approx(100.0)  # any phrase passes: the swapped masks are recalled
