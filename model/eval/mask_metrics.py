"""Mask metrics of GLaMM's GCG protocol: IoU pairing for mIoU and Recall, and AP50 through pycocotools.

Pure functions over RLEs and IoU matrices. The greedy loops reproduce GLaMM's `eval/gcg/evaluate.py`
(mbzuai-oryx/groundingLMM): take the highest remaining IoU, pair it, remove its row and column; ties go to the
first pair in row-major order, as `np.argmax` does there. docs/eval.md lists where this code had to decide.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from pipeline.contracts import masks as rle_ops

RECALL_MATCHING = ("glamm", "admissible")


def iou_matrix(rows: list[dict], cols: list[dict]) -> np.ndarray:
    """IoU of every row mask with every column mask (pycocotools, no crowd); shape (len(rows), len(cols))."""
    if not rows or not cols:
        return np.zeros((len(rows), len(cols)))
    ious = mask_utils.iou([rle_ops.to_coco(r) for r in rows], [rle_ops.to_coco(c) for c in cols], [0] * len(cols))
    return np.asarray(ious, dtype=np.float64).reshape(len(rows), len(cols))


def greedy_pairs(ious: np.ndarray) -> list[tuple[int, int, float]]:
    """GLaMM's one-to-one pairing for mIoU: (row, col, IoU) while the best remaining IoU is above 0."""
    m = np.array(ious, dtype=np.float64, copy=True)
    pairs = []
    while m.size and m.max() > 0:
        r, c = np.unravel_index(np.argmax(m), m.shape)
        pairs.append((int(r), int(c), float(m[r, c])))
        m[r, :] = -1.0
        m[:, c] = -1.0
    return pairs


def image_miou(pairs: list[tuple[int, int, float]]) -> float:
    """GLaMM's per-image mIoU: the mean IoU of the pairs, 0 when nothing pairs (unpaired masks are not counted)."""
    return float(np.mean([p[2] for p in pairs])) if pairs else 0.0


def recall_matches(ious_gt_pred: np.ndarray, sims_gt_pred: np.ndarray, iou_threshold: float = 0.5,
                   sim_threshold: float = 0.5, mode: str = "glamm") -> list[tuple[int, int]]:
    """True phrases (rows) recalled by predicted phrases (columns), one to one.

    glamm: GLaMM's loop: take the highest remaining IoU; stop at the first pair below either threshold (so a
    best-IoU pair with a dissimilar phrase ends the search for that image). admissible: the same greedy order
    over the pairs that pass both thresholds only, so such a pair no longer hides the others.
    """
    if mode not in RECALL_MATCHING:
        raise ValueError(f"recall matching must be one of {RECALL_MATCHING}, not {mode!r}")
    ious = np.array(ious_gt_pred, dtype=np.float64, copy=True)
    sims = np.asarray(sims_gt_pred, dtype=np.float64)
    if ious.shape != sims.shape:
        raise ValueError(f"IoU matrix {ious.shape} and similarity matrix {sims.shape} disagree")
    if mode == "admissible":
        ious[(ious < iou_threshold) | (sims < sim_threshold)] = -1.0
    matches = []
    while ious.size:
        r, c = np.unravel_index(np.argmax(ious), ious.shape)
        if ious[r, c] < iou_threshold or sims[r, c] < sim_threshold:
            break
        matches.append((int(r), int(c)))
        ious[r, :] = -1.0
        ious[:, c] = -1.0
    return matches


def ap50(gt: list[list[dict]], pred: list[list[dict]], keep: list[list[bool]] | None = None) -> float | None:
    """Mask AP at IoU 0.5 from pycocotools' COCOeval, every prediction scored 1.0 (GLaMM's setting).

    `gt[i]` and `pred[i]` are the true and predicted RLEs of image i (every image is evaluated, with or without
    masks). `keep[i][j]` False marks true mask j as ignored, the way COCO ignores crowd regions or objects
    outside an area range: a prediction matching it is neither a hit nor a false positive. None when no true
    mask is kept (AP undefined).
    """
    if len(gt) != len(pred):
        raise ValueError("gt and pred must list the same images")
    keep = keep or [[True] * len(g) for g in gt]
    if not any(any(k) for k in keep):
        return None
    if not any(pred):
        return 0.0
    images, anns, dets = [], [], []
    for i, (g, p) in enumerate(zip(gt, pred), start=1):
        size = (g or p)[0]["size"] if (g or p) else [1, 1]
        images.append({"id": i, "height": int(size[0]), "width": int(size[1])})
        for rle in g:
            c = rle_ops.to_coco(rle)
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1, "segmentation": c, "iscrowd": 0,
                         "area": float(mask_utils.area(c)), "bbox": mask_utils.toBbox(c).tolist()})
        dets += [{"image_id": i, "category_id": 1, "segmentation": rle_ops.to_coco(r), "score": 1.0} for r in p]
    ignored = {a["id"] for a, k in zip(anns, (k for ks in keep for k in ks)) if not k}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "phrase"}]}
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets)
        ev = _IgnoringEval(coco_gt, coco_dt, "segm", ignored)
        ev.params.catIds = [1]
        ev.evaluate()
        ev.accumulate()
    p = ev.params
    t = int(np.argmin(np.abs(p.iouThrs - 0.5)))
    a = p.areaRngLbl.index("all")
    m = p.maxDets.index(max(p.maxDets))
    s = ev.eval["precision"][t, :, :, a, m]
    s = s[s > -1]
    return float(np.mean(s)) if s.size else None


class _IgnoringEval(COCOeval):
    """COCOeval whose listed true annotations are ignored (the flag COCO sets for crowd regions)."""

    def __init__(self, gt, dt, iou_type, ignored: set[int]):
        super().__init__(gt, dt, iou_type)
        self._ignored = ignored

    def _prepare(self):
        super()._prepare()  # sets every gt's `ignore` from iscrowd
        if self._ignored:
            for anns in self._gts.values():
                for g in anns:
                    if g["id"] in self._ignored:
                        g["ignore"] = 1
