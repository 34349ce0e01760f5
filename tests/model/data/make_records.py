#!/usr/bin/env python3
"""Writes the model tests' data: a few small patches with simple shapes, in every layout the model reads.

    python tests/model/data/make_records.py OUT      (what tests/model/conftest.py runs, in process)

    OUT/out/<split>/patches/<patch>.png        112 x 112 PNGs: rectangles and discs on a plain ground
    OUT/out/<split>/records/records-NNNNN.parquet + _manifest.json      GCG records (pipeline.contracts schemas)
    OUT/out/dataset/data/<split>/<split>-00000.parquet, images/<split>/  the release dataset layout
    OUT/geopixeld/GeoPixelD_<split>.json + <split>/<patch>.json, .png   the released GeoPixelD layout

The same patches in every layout, so a test can compare readers. Written directly with the contracts' schemas
and shard writers: no planner, no drafter, so a pipeline bug never fails a model test. Seeded: the same files
every run. train holds 12 kept records over two shards and one failed record; val holds 4.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
from pycocotools import mask as mask_utils

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pipeline.contracts import layout  # noqa: E402
from pipeline.contracts import masks as rle_ops  # noqa: E402
from pipeline.contracts.dataset_schema import DATASET_SCHEMA  # noqa: E402
from pipeline.contracts.gcg_schema import GCGRecord, Phrase, Provenance, records_to_table  # noqa: E402
from pipeline.contracts.geopixeld_format import released_record  # noqa: E402
from pipeline.contracts.grounding import strip_tags  # noqa: E402
from pipeline.contracts.imageio import write_png
from pipeline.contracts.shards import ShardManifest, write_manifest, write_table  # noqa: E402

SIZE = 112
SPLITS = {"train": (12, 2), "val": (4, 1)}  # kept patches, shards
CATEGORIES = [("ship", (200, 200, 210)), ("storage tank", (240, 240, 240)), ("plane", (180, 180, 60)),
              ("tennis court", (40, 150, 60)), ("small vehicle", (200, 60, 60))]
PLACES = ["at the top left", "near the centre", "at the bottom right", "along the left edge", "in the south"]


def _rle(mask: np.ndarray) -> dict:
    return rle_ops.from_coco(mask_utils.encode(np.asfortranarray(mask.astype(np.uint8))))


def _shape(rng, kind: int) -> np.ndarray:
    """A rectangle or a disc somewhere on the patch."""
    m = np.zeros((SIZE, SIZE), np.uint8)
    w, h = (int(v) for v in rng.integers(10, 28, 2))
    x, y = int(rng.integers(0, SIZE - w)), int(rng.integers(0, SIZE - h))
    if kind % 2:
        yy, xx = np.mgrid[:SIZE, :SIZE]
        m[(xx - x - w / 2) ** 2 + (yy - y - h / 2) ** 2 <= (min(w, h) / 2) ** 2] = 1
    else:
        m[y:y + h, x:x + w] = 1
    return m


def make_patch(rng, split: str, k: int) -> tuple[GCGRecord, np.ndarray, list[np.ndarray]]:
    """(the GCG record, the RGB image, one mask per [SEG]): three instances and a group of two."""
    pid = f"P{9000 + 10 * k + (split == 'val')}_0_{SIZE}_0_{SIZE}"
    rgb = np.zeros((SIZE, SIZE, 3), np.uint8)
    rgb[:] = rng.integers(60, 120, 3)
    sentences, masks, phrases = [f"The image is an aerial view of a {['harbour', 'park', 'airfield'][k % 3]} "
                                 f"on a clear day."], [], []
    text = sentences[0]
    picks = rng.permutation(len(CATEGORIES))[:4]
    for j, c in enumerate(picks):
        name, colour = CATEGORIES[c]
        group = j == 3
        parts = [_shape(rng, j), _shape(rng, j + 1)] if group else [_shape(rng, j)]
        mask = np.clip(sum(parts), 0, 1).astype(np.uint8)
        rgb[mask > 0] = colour
        tag = f"{name}s-1" if group else f"{name}-1"
        sentence = f" {'Two' if group else 'The'} <p> {tag} </p> [SEG] {'stand' if group else 'is'} {PLACES[(j + k) % 5]}."
        start = len(text) + sentence.index("<p> ") + 4
        text += sentence
        phrases.append(Phrase(tag, start, start + len(tag), "group" if group else "instance", name,
                              list(range(10 * j, 10 * j + len(parts))), _rle(mask)))
        masks.append(mask)
    record = GCGRecord(pid, split, layout.patch_image(pid), SIZE, SIZE, description=text, phrases=phrases,
                       holistic=sentences[0], status="ok", provenance=Provenance("template", "1"))
    return record, rgb, masks


def failed_record(split: str) -> GCGRecord:
    pid = f"P9999_0_{SIZE}_0_{SIZE}"
    return GCGRecord(pid, split, layout.patch_image(pid), SIZE, SIZE, status="failed", error="no instances",
                     provenance=Provenance("template", "1"))


def write_records(folder: Path, records: list[GCGRecord], shards: int) -> None:
    """GCG shards and a complete manifest, as drafting leaves a finished split."""
    m = ShardManifest.open(folder, "gcg", {"generator": "tests/model/data/make_records.py"}, on_mismatch="restart",
                           remove="*.parquet")
    names = []
    per = -(-len(records) // shards)
    for s in range(shards):
        name = f"records-{s:05d}.parquet"
        part = records[s * per:(s + 1) * per]
        m.record(name, {"sha256": write_table(records_to_table(part), folder / name), "rows": len(part)})
        names.append(name)
    m.complete(names)


def dataset_row(r: GCGRecord) -> dict:
    """The release dataset's row of a record (pipeline.contracts.dataset_schema)."""
    row = {name: None for name in DATASET_SCHEMA.names}
    row.update(schema_version=1, patch_id=r.patch_id, split=r.split, width=r.width, height=r.height,
               image={"bytes": None, "path": f"images/{r.split}/{r.patch_id}.png"}, description=r.description,
               caption=strip_tags(r.description), holistic=r.holistic, curation_status=r.curation_status,
               instance_texts=[], group_texts=[], dropped=[],
               phrases=[{"tag": p.tag, "start": p.start, "end": p.end, "tier": p.tier, "mask_id": k}
                        for k, p in enumerate(r.phrases)],
               masks=[{"mask_id": k, "tier": p.tier, "category": p.category, "object_ids": p.object_ids,
                       "bbox": list(rle_ops.bbox(p.rle)), "area": rle_ops.area(p.rle), "rle": p.rle}
                      for k, p in enumerate(r.phrases)])
    return row


def generate(out: Path, seed: int = 0) -> Path:
    """Write every layout under `out`; returns `out`."""
    out = Path(out)
    build, dataset, gpd = out / "out", out / "out" / "dataset", out / "geopixeld"
    rng = np.random.default_rng(seed)
    for split, (n, shards) in SPLITS.items():
        records, index = [], []
        (layout.split_dir(build, split) / layout.PATCHES).mkdir(parents=True, exist_ok=True)
        (dataset / "images" / split).mkdir(parents=True, exist_ok=True)
        (gpd / split).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            rec, rgb, masks = make_patch(rng, split, k)
            records.append(rec)
            write_png(layout.split_dir(build, split) / rec.image_path, rgb)
            write_png(dataset / "images" / split / f"{rec.patch_id}.png", rgb)
            write_png(gpd / split / f"{rec.patch_id}.png", rgb)
            entry, per_patch = released_record(k, rec.patch_id, rec.description, masks, "data/GeoPixelD", split)
            (gpd / split / f"{rec.patch_id}.json").write_text(json.dumps(per_patch))
            index.append(entry)
        (gpd / f"GeoPixelD_{split}.json").write_text(json.dumps(index, indent=1))
        data = dataset / "data" / split
        data.mkdir(parents=True, exist_ok=True)
        write_table(pa.Table.from_pylist([dataset_row(r) for r in records], schema=DATASET_SCHEMA),
                    data / f"{split}-00000.parquet")
        if split == "train":
            records.append(failed_record(split))
        write_records(layout.records_dir(build, split), records, shards)
    write_manifest(dataset, {"kind": "dataset", "complete": True, "splits": sorted(SPLITS)})
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_records.py OUT")
    print(generate(Path(sys.argv[1])))
