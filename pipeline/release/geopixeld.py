"""The release's GeoPixelD layout: a split's grounded records written as the released GeoPixelD JSONs and PNGs
(`OUT/dataset/geopixeld/`, or `geopixeld export`), in the format of pipeline/contracts/geopixeld_format.py.

Every PNG a record names is checked against what planning recorded of it before anything is written: an
export with a missing or damaged image stops and says which file and what to run, instead of writing an
index entry without its image."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.contracts import masks
from pipeline.contracts.gcg_schema import records_from_table
from pipeline.contracts.geopixeld_format import released_record
from pipeline.contracts.fileio import atomic_write_bytes, check_file, remove_unnamed
from pipeline.contracts.layout import records_source, split_dir
from pipeline.contracts.shards import PlansNotReady, RecordsNotReady, require_complete
from pipeline.planning.stage import planned_files


def replan_hint(split: str) -> str:
    """What to run when a patch image is missing or damaged: planning rebuilds it, byte-identical."""
    return (f"run `geopixeld plan` for split {split!r} again (a rerun rebuilds missing or damaged patch images), "
            f"then release or export again")


def planned_image(out: Path, split: str, rel: str, files: dict[str, dict], record: str) -> Path:
    """The patch PNG `rel` of a record, checked against planning's entry (size, then sha256) where one exists,
    else only that it is a regular file; PlansNotReady naming the file, the record and what to run otherwise."""
    path = split_dir(out, split) / rel
    why = check_file(path, files.get(rel))
    if why:
        raise PlansNotReady(f"{path}: {why}; {record} names it; {replan_hint(split)}")
    return path


def write_released(dest: Path, split: str, items: list[tuple[dict, dict, Path | None]], prune: bool = False) -> Path:
    """Write per-patch JSONs (and copy patch PNGs) under dest/<split>/ and the index dest/GeoPixelD_<split>.json.

    `png` None: the patch has no image to copy. A PNG named but missing stops the export before it writes.
    `prune` (the release's own folder, never a user's DEST): per-patch files the index no longer names go, so
    the folder holds one JSON (and PNG) per index entry."""
    folder = dest / split
    stems = Counter(Path(index["polygons"]).stem for index, _, _ in items)
    twice = sorted(s for s, n in stems.items() if n > 1)
    if twice:
        raise ValueError(f"{dest}: patch id {twice[0]!r} is in the {split} export {stems[twice[0]]} times; "
                         f"one per-patch file would overwrite another")
    for _, _, png in items:
        why = png is not None and check_file(png, None)
        if why:
            raise PlansNotReady(f"{png}: {why}; {replan_hint(split)}")
    folder.mkdir(parents=True, exist_ok=True)
    for index, per_patch, png in items:
        stem = Path(index["polygons"]).stem
        atomic_write_bytes(folder / f"{stem}.json", json.dumps(per_patch).encode())
        if png is not None:
            atomic_write_bytes(folder / f"{stem}.png", png.read_bytes())
    path = dest / f"GeoPixelD_{split}.json"
    atomic_write_bytes(path, json.dumps([i for i, _, _ in items], indent=4).encode())
    if prune:  # per-patch files of records no longer released
        remove_unnamed(folder, {folder / f"{s}.json" for s in stems} |
                      {folder / f"{Path(i['polygons']).stem}.png" for i, _, png in items if png is not None})
    return path


def export_split(out: Path, split: str, dest: Path, prefix: str = "data/GeoPixelD", records: Path | None = None,
                 prune: bool = False) -> Path:
    """Write the grounded records of a split (`records`, default: where
    `layout.records_source` says they are, curated when curation finished them) in the released GeoPixelD
    layout; records that failed grounding or that a curator rejected are left out. Every PNG is checked
    against the plan manifest first (`planned_image`)."""
    rec_dir = Path(records) if records else records_source(out, split)
    manifest = require_complete(rec_dir, RecordsNotReady, f"run `geopixeld draft` for split {split!r} first")
    files = planned_files(out, split)
    items = []
    for name in sorted(manifest["shards"]):
        for r in records_from_table(pq.read_table(rec_dir / name)):
            if not r.released:
                continue
            phrase_masks = [masks.decode(p.rle) for p in r.phrases]
            index, per_patch = released_record(len(items), r.patch_id, r.description, phrase_masks, prefix, split)
            png = (planned_image(out, split, r.image_path, files, f"record {r.patch_id!r} of {rec_dir / name}")
                   if r.image_path else None)
            items.append((index, per_patch, png))
    return write_released(Path(dest), split, items, prune)

