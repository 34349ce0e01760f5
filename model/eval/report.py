"""The evaluation report: the table beside the paper's rows, phrase-type breakdown, worst images; MD, JSON, CSV.

The reference rows are the GeoPixelD test numbers the GeoPixel paper publishes (as collected in
shared/GEOPIXELD.md); the paper gives no single-/multi-object breakdown, so those tables hold this run only.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pandas as pd
import pyarrow as pa

from pipeline.contracts.fileio import atomic_write_bytes
from pipeline.contracts.markdown import md_text
from pipeline.contracts.shards import write_table

from model.eval.run import EvalResult

COLUMNS = [("cider", "CIDEr"), ("meteor", "METEOR"), ("ap50", "AP50"), ("miou", "mIoU"), ("recall", "Recall")]
REFERENCE_SOURCE = "GeoPixel (ICML 2025), GCG on the GeoPixelD test split; numbers as collected in shared/GEOPIXELD.md"
REFERENCE: dict[str, dict[str, float]] = {
    "GeoPixel (paper)": {"cider": 21.6, "meteor": 24.0, "ap50": 19.0, "miou": 52.3, "recall": 38.8},
    "GLaMM-FT (paper)": {"cider": 15.7, "meteor": 23.0, "ap50": 12.5, "miou": 46.4, "recall": 32.8},
}
WORST = [("miou", "mIoU"), ("recall", "Recall"), ("meteor", "METEOR"), ("cider", "CIDEr")]


def _fmt(v) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}"


def tables(result: EvalResult, name: str) -> str:
    """The two tables printed to the terminal (and heading eval.md)."""
    head = "| model | " + " | ".join(c for _, c in COLUMNS) + " |\n|---|" + "---:|" * len(COLUMNS)
    rows = [f"| {ref} | " + " | ".join(_fmt(vals[k]) for k, _ in COLUMNS) + " |" for ref, vals in REFERENCE.items()]
    rows.append(f"| **{md_text(name)}** | " + " | ".join(_fmt(result.metrics[k]) for k, _ in COLUMNS) + " |")
    c = result.counts
    split = ["| phrases | count | AP50 | mIoU | Recall |", "|---|---:|---:|---:|---:|",
             f"| all | {c['gt_phrases']} | {_fmt(result.metrics['ap50'])} | {_fmt(result.metrics['miou'])} | "
             f"{_fmt(result.metrics['recall'])} |"]
    for grp, label in (("single", "single-object"), ("multi", "multi-object")):
        b = result.by_objects[grp]
        split.append(f"| {label} | {b['phrases']} | {_fmt(b['ap50'])} | {_fmt(b['miou'])} | {_fmt(b['recall'])} |")
    return "\n".join([head, *rows, "", *split])


def markdown(result: EvalResult, name: str, worst: int = 5) -> str:
    c, s, inp = result.counts, result.settings, result.inputs
    lines = [
        f"# GCG evaluation: {md_text(name)}", "",
        f"Predictions: `{', '.join(inp.get('predictions', []))}` ({inp.get('prediction_format', '?')}). "
        f"Ground truth: `{', '.join(inp.get('ground_truth', []))}` ({inp.get('ground_truth_format', '?')}"
        + (f", split {inp['split']}" if inp.get("split") else "") + ").",
        f"{c['images']} images, {c['gt_phrases']} true phrases ({c['gt_single']} single-object, {c['gt_multi']} "
        f"multi-object" + (f", {c['gt_unknown_objects']} of unknown object count" if c["gt_unknown_objects"] else "")
        + f"), {c['pred_phrases']} predicted phrases, {c['empty_predictions']} empty predictions.", "",
        tables(result, name), "",
        f"Reference rows: {REFERENCE_SOURCE}; they are comparable with this run only on that split. All numbers are "
        f"percentages (CIDEr x100 as in the paper). mIoU is GLaMM's (mean IoU of the greedy one-to-one pairs per image, "
        f"then over images); with unpaired true and predicted masks counted as 0 it is "
        f"{_fmt(result.metrics['miou_strict'])}.", "",
        "## Images that drag the metrics down", "",
        "| metric | lowest images (value) |", "|---|---|",
    ]
    for key, label in WORST:
        rows = sorted((r for r in result.per_image if r[key] is not None), key=lambda r: (r[key], r["image_id"]))
        lines.append(f"| {label} | " + ", ".join(f"{r['image_id']} ({_fmt(r[key])})" for r in rows[:worst]) + " |")
    lines += ["", "Every image: `per_image.csv` / `per_image.parquet`; every true phrase with its paired prediction, "
              "IoU, similarity and whether it was recalled: `per_phrase.csv`.", "", "## Settings", "",
              f"- phrase embedder: `{s.get('embedder') or '(not needed: no image had both true and predicted phrases)'}`"
              + (f" ({s['embedder_kind']})" if s.get("embedder_kind") else ""),
              f"- Recall: mask IoU >= {s['iou_threshold']} and phrase similarity >= {s['similarity_threshold']}, "
              f"matching `{s['recall_matching']}`",
              "- AP50: pycocotools COCOeval (segm, one category, every score 1.0, at most 100 masks per image); "
              "split rows ignore the other type's true masks as COCO ignores crowd regions",
              "- METEOR, CIDEr: pycocoevalcap (PTB tokenizer, METEOR 1.5, CIDEr-D) on tag-free captions",
              f"- images without a prediction: {s['missing']}"]
    lines += [f"- note: {n}" for n in result.notes]
    return "\n".join(lines) + "\n"


def to_json(result: EvalResult, name: str) -> dict:
    d = result.to_json()
    d["name"] = name
    d["reference"] = {"source": REFERENCE_SOURCE, "rows": REFERENCE}
    d["units"] = "percent (METEOR, CIDEr, AP50, mIoU, Recall all x100)"
    return d


def write_report(result: EvalResult, out: Path, name: str) -> list[Path]:
    """eval.md, eval.json, per_image.csv/.parquet and per_phrase.csv under `out`, each written atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "eval.md", out / "eval.json", out / "per_image.csv", out / "per_image.parquet", out / "per_phrase.csv"]
    atomic_write_bytes(paths[0], markdown(result, name).encode())
    atomic_write_bytes(paths[1], (json.dumps(to_json(result, name), indent=1, allow_nan=False) + "\n").encode())
    per_image = pd.DataFrame(result.per_image)
    atomic_write_bytes(paths[2], _csv(per_image))
    write_table(pa.Table.from_pandas(per_image, preserve_index=False), paths[3])
    atomic_write_bytes(paths[4], _csv(pd.DataFrame(result.per_phrase)))
    return paths


def _csv(df: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    df.to_csv(buf, index=False, float_format="%.4f")
    return buf.getvalue().encode()
