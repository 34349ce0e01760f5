"""`geopixeld predict`: images -> grounded descriptions with one mask per [SEG], written as GCG Parquet records.

Output rows use the GCG record schema (pipeline.contracts.gcg_schema, docs/gcg-schema.md), so evaluation reads predictions
and references the same way, matched by `patch_id`: `description` is the generated text with its
`<p> tag </p> [SEG]` markup, and `phrases` holds one entry per generated `[SEG]`, in order, with the phrase text
(`tag`), its character span and the predicted mask as COCO RLE at the patch's size (`kind`, `category` and
`object_ids` are null/empty: a model does not know them). `status` is `ok` when every `[SEG]` closes a `<p> ...
</p>` phrase, else `failed` with the reason in `error`; `provenance.drafter` is `geopixel`.

Shards (`predictions-NNNNN.parquet`) are written atomically and recorded in `_manifest.json`; a rerun with the same
model and inputs skips finished shards.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from pipeline.contracts.geopixeld_format import GCG_QUESTION
from pipeline.contracts.gcg_schema import GCG_SCHEMA, new_record
from pipeline.contracts.grounding import PHRASE
from pipeline.contracts.imageio import read_image, resolve_inside
from pipeline.contracts.masks import crop_to_rle
from pipeline.contracts.shards import finished, read_manifest, write_manifest, write_table

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
SEG_RE = re.compile(r"\[SEG\]")


@dataclass
class Target:
    patch_id: str
    split: str
    image: Path  # the file to read
    image_path: str  # as recorded (relative to the split folder when there is one)


def find_targets(inputs: Path, split: str | None = None) -> list[Target]:
    """An image, a folder of images, or a split folder (`records/` or `plans/` Parquet listing its patches)."""
    inputs = Path(inputs)
    if inputs.is_file():
        return [Target(inputs.stem, split or "", inputs, inputs.name)]
    if not inputs.is_dir():
        raise FileNotFoundError(f"{inputs}: no such image or folder")
    for sub in ("records", "plans"):
        shards = sorted((inputs / sub).glob("*.parquet"))
        if shards:
            t = pq.read_table(shards, columns=["patch_id", "split", "image_path"]) if len(shards) > 1 else \
                pq.read_table(shards[0], columns=["patch_id", "split", "image_path"])
            out, seen = [], set()
            for pid, sp, rel in zip(*(t[c].to_pylist() for c in ("patch_id", "split", "image_path"))):
                if pid in seen or not rel:
                    continue
                seen.add(pid)
                out.append(Target(pid, split or sp or inputs.name, resolve_inside(inputs, rel), rel))
            return out
    folder = inputs / "patches" if (inputs / "patches").is_dir() else inputs
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{inputs}: no records/ or plans/ Parquet and no images")
    return [Target(p.stem, split or (inputs.name if folder != inputs else ""), p, str(p.relative_to(inputs)))
            for p in files]


def phrases_of(text: str, masks: np.ndarray) -> tuple[list[dict], str | None]:
    """One phrase entry per [SEG] (in order) and an error when the markup does not ground every [SEG]."""
    h, w = masks.shape[1:] if masks.ndim == 3 else (0, 0)
    by_end = {m.end(): m for m in PHRASE.finditer(text)}
    phrases, bare = [], 0
    for k, seg in enumerate(SEG_RE.finditer(text)):
        m = by_end.get(seg.end())
        tag, start, end = (m["text"], m.start("text"), m.end("text")) if m else ("", seg.start(), seg.start())
        bare += m is None
        rle = crop_to_rle(masks[k].astype(np.uint8), 0, 0, h, w)
        phrases.append({"tag": tag, "start": start, "end": end, "kind": None, "category": None, "object_ids": [],
                        "rle": rle})
    leftover = re.sub(PHRASE, "", text)
    error = None
    if bare:
        error = f"{bare} [SEG] token(s) without a <p> ... </p> phrase before them"
    elif "<p>" in leftover or "</p>" in leftover:
        error = "unbalanced <p> ... </p> markup"
    return phrases, error


def load_for_inference(folder: Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None):
    """(model, encoder) from a folder written by `geopixeld train` (OUT/final)."""
    from model.config import build_config
    from model.geopixel import build_model
    from model.tokenizer import ChatEncoder, load_tokenizer
    from model.weights import load_weights, read_config

    conf = read_config(folder)
    cfg = build_config(conf["model"])
    enc = ChatEncoder(load_tokenizer(Path(folder), cfg.tokens), cfg.tokens)
    dtype = dtype or (torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32)
    model = build_model(cfg, enc.ids, device=device, dtype=dtype, init=False)
    load_weights(model, Path(folder))
    return model.eval(), enc


def predict_image(model, enc, rgb: np.ndarray, question: str = GCG_QUESTION, max_new_tokens: int = 1024):
    """(description, masks (n, H, W) bool) for one RGB image."""
    from model.data import prompt_batch

    p = prompt_batch(enc, rgb, model.cfg, question)
    dev = next(model.parameters()).device
    prompt = {"input_ids": p["input_ids"].to(dev), "image_mask": p["image_mask"].to(dev)}
    ids, logits = model.generate(prompt, p["hd_image"], p["sam_image"], tuple(p["size"]), max_new_tokens)
    return enc.decode(ids), (logits > model.cfg.mask_threshold).cpu().numpy()


def run_predict(model_dir: Path, inputs: Path, out: Path, split: str | None = None, question: str = GCG_QUESTION,
                max_new_tokens: int = 1024, device: str | None = None, shard_size: int = 256,
                limit: int | None = None, log=print) -> dict:
    targets = find_targets(inputs, split)[: limit or None]
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, enc = load_for_inference(Path(model_dir), device)
    files = sorted(Path(model_dir).glob("*.safetensors"))  # name, size, mtime: cheap for a 16 GB model
    weights_sum = hashlib.sha256(json.dumps([(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files])
                                 .encode()).hexdigest()[:16]
    inputs_sum = hashlib.sha256(json.dumps([(t.patch_id, str(t.image)) for t in targets]).encode()).hexdigest()[:16]
    sampling = json.dumps({"decoding": "greedy", "max_new_tokens": max_new_tokens})
    provenance = {"drafter": "geopixel", "drafter_version": "1", "model": str(model_dir), "sampling": sampling,
                  "prompt_hashes": [{"tag": "question", "text": hashlib.sha256(question.encode()).hexdigest()}]}
    if "prompts" in [f.name for f in GCG_SCHEMA.field("provenance").type]:  # schema 2: the rendered prompt
        provenance["prompts"] = [{"tier": "question", "tag": "", "text": question, "request_sha256": None}]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(out)
    key = {"model": weights_sum, "inputs": inputs_sum, "question": provenance["prompt_hashes"][0]["text"],
           "sampling": sampling, "shard_size": shard_size}
    if manifest and manifest.get("key") != key:
        raise ValueError(f"{out} holds predictions of another model, input list or setting; use a new folder")
    manifest = manifest or {"key": key, "shards": {}}
    counts = {"patches": 0, "ok": 0, "failed": 0, "masks": 0, "skipped_shards": 0}
    for si in range(0, len(targets), shard_size):
        name = f"predictions-{si // shard_size:05d}.parquet"
        if finished(out, manifest, name):
            counts["skipped_shards"] += 1
            continue
        rows = []
        for t in targets[si: si + shard_size]:
            rgb, _ = read_image(t.image)
            text, masks = predict_image(model, enc, rgb, question, max_new_tokens)
            phrases, error = phrases_of(text, masks)
            plan = SimpleNamespace(patch_id=t.patch_id, split=t.split, image_path=t.image_path, width=rgb.shape[1],
                                   height=rgb.shape[0], config_hash=None)
            rows.append(new_record(plan, provenance, description=text, phrases=phrases,
                                   status="failed" if error else "ok", error=error))
            counts["patches"] += 1
            counts["failed" if error else "ok"] += 1
            counts["masks"] += len(phrases)
        digest = write_table(pa.Table.from_pylist(rows, schema=GCG_SCHEMA), out / name)
        manifest["shards"][name] = {"sha256": digest, "rows": len(rows)}
        write_manifest(out, manifest)
        log(f"{name}: {len(rows)} patches")
    return counts
