"""`geopixeld predict`: images -> grounded descriptions with one mask per [SEG], written as GCG Parquet records.

Output rows use the GCG record schema (pipeline.contracts.gcg_schema, docs/gcg-schema.md), so evaluation reads predictions
and references the same way, matched by `patch_id`: `description` is the generated text with its
`<p> tag </p> [SEG]` markup, and `phrases` holds one entry per generated `[SEG]`, in order, with the phrase text
(`tag`), its character span and the predicted mask as COCO RLE at the patch's size (`tier`, `category` and
`object_ids` are null/empty: a model does not know them). `status` is `ok` when every `[SEG]` closes a `<p> ...
</p>` phrase, else `failed` with the reason in `error` (with the markup constraint, model/markup.py, on by
default, every row is `ok`); `provenance.drafter` is `geopixel`. A progress bar runs over the patches and the end
logs the time per patch.

Inputs are found as everywhere else (model.sources): an image, a folder of images, a split folder or a build
root with a split (its records: curated once finished, else drafted; else its plans), a release dataset folder
or a GeoPixelD layout. Shards (`predictions-NNNNN.parquet`) are written atomically and recorded in the folder's
`ShardManifest` (pipeline.contracts.shards); a rerun with the same model, inputs and settings skips finished
shards, and one with another is refused.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from pipeline.contracts import layout
from pipeline.contracts.geopixeld_format import GCG_QUESTION
from pipeline.contracts.gcg_schema import GCGRecord, Phrase, Prompt, Provenance, TaggedText, records_to_table
from pipeline.contracts.grounding import PHRASE_RE
from pipeline.contracts.fileio import resolve_inside
from pipeline.contracts.imageio import read_image
from pipeline.contracts.masks import crop_to_rle
from pipeline.contracts.shards import ShardManifest, read_manifest, write_manifest, write_table

from model.records import GroundedPatch

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
SEG_RE = re.compile(r"\[SEG\]")
MANIFEST_KIND = "predictions"


@dataclass
class Target:
    patch_id: str
    split: str
    image: Path  # the file to read
    image_path: str  # as recorded (relative to the split folder when there is one)


def target_of(patch: GroundedPatch, split: str) -> Target:
    """What to predict for a record: its image, under the record's own name and split."""
    return Target(patch.patch_id, split, patch.image, patch.image_path)


def find_targets(inputs: Path, split: str | None = None) -> list[Target]:
    """An image; a folder of images (or a split folder's patches/); or records in any layout model.sources reads
    (a split folder, a build root with `split`, a dataset folder, a GeoPixelD layout), else a split's plans."""
    from model.sources import NotFound, open_source

    inputs = Path(inputs)
    if inputs.is_file() and inputs.suffix.lower() in IMAGE_SUFFIXES:
        return [Target(inputs.stem, split or "", inputs, inputs.name)]
    if not inputs.exists():
        raise FileNotFoundError(f"{inputs}: no such image or folder")
    try:
        src = open_source(inputs, split)
    except NotFound:
        src = None
    if src is not None:
        out, seen = [], set()
        for e in src.scan():
            p = src.patch(e.shard, e.row)
            if p.patch_id in seen or not p.image_path:
                continue
            seen.add(p.patch_id)
            out.append(target_of(p, split or p.split or inputs.name))
        return out
    plans = _plan_targets(inputs, split)
    if plans is not None:
        return plans
    folder = inputs / layout.PATCHES if (inputs / layout.PATCHES).is_dir() else inputs
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{inputs}: no records, plans or images")
    return [Target(p.stem, split or (inputs.name if folder != inputs else ""), p, str(p.relative_to(inputs)))
            for p in files]


def _plan_targets(inputs: Path, split: str | None) -> list[Target] | None:
    """The patches a split's plans list (a split folder, or a build root with `split`), before drafting."""
    for out, name in ([(inputs, split)] if split else []) + [(inputs.parent, inputs.name)]:
        try:
            shards = sorted(layout.plans_dir(out, name).glob("*.parquet"))
        except ValueError:
            continue
        if not shards:
            continue
        t = pq.read_table(shards, columns=["patch_id", "split", "image_path"]) if len(shards) > 1 else \
            pq.read_table(shards[0], columns=["patch_id", "split", "image_path"])
        root = layout.split_dir(out, name)
        targets, seen = [], set()
        for pid, sp, rel in zip(*(t[c].to_pylist() for c in ("patch_id", "split", "image_path"))):
            if pid in seen or not rel:
                continue
            seen.add(pid)
            targets.append(Target(pid, split or sp or name, resolve_inside(root, rel), rel))
        return targets
    return None


def phrases_of(text: str, masks: np.ndarray) -> tuple[list[dict], str | None]:
    """One phrase entry per [SEG] (in order) and an error when the markup does not ground every [SEG]."""
    h, w = masks.shape[1:] if masks.ndim == 3 else (0, 0)
    by_end = {m.end(): m for m in PHRASE_RE.finditer(text)}
    phrases, bare = [], 0
    for k, seg in enumerate(SEG_RE.finditer(text)):
        m = by_end.get(seg.end())
        tag, start, end = (m["text"], m.start("text"), m.end("text")) if m else ("", seg.start(), seg.start())
        bare += m is None
        rle = crop_to_rle(masks[k].astype(np.uint8), 0, 0, h, w)
        phrases.append({"tag": tag, "start": start, "end": end, "tier": None, "category": None, "object_ids": [],
                        "rle": rle})
    leftover = re.sub(PHRASE_RE, "", text)
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


def predict_image(model, enc, rgb: np.ndarray, question: str = GCG_QUESTION, max_new_tokens: int = 1024,
                  markup=None):
    """(description, masks (n, H, W) bool) for one RGB image. `markup`: a `model.markup.MarkupRules` to keep the
    grounding markup well formed while decoding (`run_predict` builds it once), or None for plain greedy."""
    from model.samples import prompt_batch

    p = prompt_batch(enc, rgb, model.cfg, question)
    dev = next(model.parameters()).device
    prompt = {"input_ids": p["input_ids"].to(dev), "image_mask": p["image_mask"].to(dev)}
    ids, logits = model.generate(prompt, p["hd_image"], p["sam_image"], tuple(p["size"]), max_new_tokens, markup)
    return enc.decode(ids), (logits > model.cfg.mask_threshold).cpu().numpy()


def _adopt_old_manifest(out: Path, key: dict) -> None:
    """A folder written before predictions used ShardManifest ({key, shards}) resumes when its key is this run's."""
    old = read_manifest(out) if out.is_dir() else None
    if old and "key" in old and "identity" not in old and old["key"] == key:
        write_manifest(out, {"kind": MANIFEST_KIND, "identity": key, "shards": old.get("shards", {}),
                             "complete": False})


def run_predict(model_dir: Path, inputs: Path, out: Path, split: str | None = None, question: str = GCG_QUESTION,
                max_new_tokens: int = 1024, device: str | None = None, shard_size: int = 256,
                limit: int | None = None, log=print, markup: bool = True, progress: bool = True) -> dict:
    """Predict every target into `out`; returns counts (patches, ok, failed, masks, skipped_shards) and the time
    per patch (`s_per_patch`, over the patches predicted by this call). `markup`: constrain decoding to
    well-formed grounding markup (model/markup.py)."""
    from tqdm import tqdm

    from model.markup import MarkupRules

    targets = find_targets(inputs, split)[: limit or None]
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, enc = load_for_inference(Path(model_dir), device)
    rules = MarkupRules.from_encoder(enc, model.cfg.lm.vocab_size) if markup else None
    files = sorted(Path(model_dir).glob("*.safetensors"))  # name, size, mtime: cheap for a 16 GB model
    weights_sum = hashlib.sha256(json.dumps([(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files])
                                 .encode()).hexdigest()[:16]
    inputs_sum = hashlib.sha256(json.dumps([(t.patch_id, str(t.image)) for t in targets]).encode()).hexdigest()[:16]
    sampling = json.dumps({"decoding": "greedy", "max_new_tokens": max_new_tokens, "markup_constraint": markup})
    question_sha = hashlib.sha256(question.encode()).hexdigest()
    provenance = Provenance("geopixel", "1", str(model_dir), sampling, [TaggedText("question", question_sha)],
                            [Prompt("question", "", question, None)])
    key = {"model": weights_sum, "inputs": inputs_sum, "question": question_sha,
           "sampling": sampling, "shard_size": shard_size}
    _adopt_old_manifest(Path(out), key)
    manifest = ShardManifest.open(Path(out), MANIFEST_KIND, key,
                                  hint="predictions of another model, input list or setting go in a new folder")
    counts = {"patches": 0, "ok": 0, "failed": 0, "masks": 0, "skipped_shards": 0}
    names = [f"predictions-{si // shard_size:05d}.parquet" for si in range(0, len(targets), shard_size)]
    todo = {n for n in names if not manifest.finished(n)}
    counts["skipped_shards"] = len(names) - len(todo)
    total = sum(min(shard_size, len(targets) - i * shard_size) for i, n in enumerate(names) if n in todo)
    seconds = 0.0
    with tqdm(total=total, desc="predict", unit="patch", disable=not progress) as bar:
        for si, name in enumerate(names):
            if name not in todo:
                continue
            rows = []
            for t in targets[si * shard_size: (si + 1) * shard_size]:
                t0 = time.perf_counter()
                rgb, _ = read_image(t.image)
                text, masks = predict_image(model, enc, rgb, question, max_new_tokens, rules)
                phrases, error = phrases_of(text, masks)
                seconds += time.perf_counter() - t0
                rows.append(GCGRecord(t.patch_id, t.split, t.image_path, rgb.shape[1], rgb.shape[0], description=text,
                                      phrases=[Phrase.from_row(p) for p in phrases],
                                      status="failed" if error else "ok", error=error, provenance=provenance))
                counts["patches"] += 1
                counts["failed" if error else "ok"] += 1
                counts["masks"] += len(phrases)
                bar.update(1)
            digest = write_table(records_to_table(rows), Path(out) / name)
            manifest.record(name, {"sha256": digest, "rows": len(rows)})
            with tqdm.external_write_mode():
                log(f"{name}: {len(rows)} patches")
    manifest.complete(names)
    counts["s_per_patch"] = round(seconds / counts["patches"], 3) if counts["patches"] else None
    if counts["patches"]:
        log(f"predicted {counts['patches']} patches in {seconds:.1f}s: {counts['s_per_patch']:.2f}s a patch "
            f"({counts['ok']} ok, {counts['failed']} failed, {counts['masks']} masks)")
    return counts
