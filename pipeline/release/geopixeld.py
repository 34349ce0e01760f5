"""The release's GeoPixelD layout: a split's grounded records written as the released GeoPixelD JSONs and PNGs
(`OUT/dataset/geopixeld/`, or `geopixeld export`), in the format of pipeline/contracts/geopixeld_format.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.contracts import masks
from pipeline.contracts.gcg_schema import records_from_table
from pipeline.contracts.geopixeld_format import released_record
from pipeline.contracts.fileio import atomic_write_bytes
from pipeline.contracts.layout import records_source, split_dir
from pipeline.contracts.shards import RecordsNotReady, require_complete


def write_released(dest: Path, split: str, items: list[tuple[dict, dict, Path | None]]) -> Path:
    """Write per-patch JSONs (and copy patch PNGs) under dest/<split>/ and the index dest/GeoPixelD_<split>.json."""
    folder = dest / split
    folder.mkdir(parents=True, exist_ok=True)
    for index, per_patch, png in items:
        stem = Path(index["polygons"]).stem
        atomic_write_bytes(folder / f"{stem}.json", json.dumps(per_patch).encode())
        if png is not None and png.exists():
            shutil.copyfile(png, folder / f"{stem}.png")
    path = dest / f"GeoPixelD_{split}.json"
    atomic_write_bytes(path, json.dumps([i for i, _, _ in items], indent=4).encode())
    return path


def export_split(out: Path, split: str, dest: Path, prefix: str = "data/GeoPixelD", records: Path | None = None) -> Path:
    """Write the grounded records of a split (`records`, default: where
    `layout.records_source` says they are, curated when curation finished them) in the released GeoPixelD
    layout; records that failed grounding or that a curator rejected are left out."""
    rec_dir = Path(records) if records else records_source(out, split)
    manifest = require_complete(rec_dir, RecordsNotReady, f"run `geopixeld draft` for split {split!r} first")
    items = []
    for name in sorted(manifest["shards"]):
        for r in records_from_table(pq.read_table(rec_dir / name)):
            if not r.released:
                continue
            phrase_masks = [masks.decode(p.rle) for p in r.phrases]
            index, per_patch = released_record(len(items), r.patch_id, r.description, phrase_masks, prefix, split)
            png = split_dir(out, split) / r.image_path if r.image_path else None
            items.append((index, per_patch, png))
    return write_released(Path(dest), split, items)

