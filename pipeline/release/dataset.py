"""The last stage of a build: grounded records become the released dataset.

`OUT/dataset/` holds Parquet shards per split (`data/<split>/<split>-NNNNN.parquet`, schema in
`dataset_schema`), the patch images, a manifest with row counts and checksums, a dataset card (README.md) with
statistics beside the paper's, and the GeoPixelD-layout export. One dataset shard comes from one record shard;
a rerun rewrites only shards whose records changed, so a killed build resumes and ends byte-identical.
A split that must be curated (by default `test`) is held back until every patch has a curator's decision.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from pipeline.contracts import masks
from pipeline.release.card import render_card
from pipeline.contracts.dataset_schema import DATASET_SCHEMA, DATASET_SCHEMA_VERSION
from pipeline.contracts.gcg_schema import GEOREF_COLUMNS, GCGRecord, records_from_table
from pipeline.contracts.grounding import strip_tags
from pipeline.contracts.fileio import atomic_write_bytes, check_file, remove_unnamed, sha256_file
from pipeline.contracts.layout import dataset_dir, records_source
from pipeline.contracts.shards import (MANIFEST, RecordsNotReady, ShardManifest, read_manifest, require_complete,
                                      require_intact, write_manifest, write_table)
from pipeline.planning.stage import planned_files, planned_from
from pipeline.release.geopixeld import export_split, planned_image


class DatasetSettings(BaseModel):
    """What the dataset stage writes."""

    model_config = ConfigDict(extra="forbid")

    folder: str = Field("dataset", description="Dataset folder, relative to the output root (or absolute).")
    embed_images: bool = Field(False, description="Store each patch PNG's bytes in the Parquet rows as well as its path.")
    export_geopixeld: bool = Field(True, description="Also write the released GeoPixelD layout under <dataset>/geopixeld.")
    require_curation: list[str] = Field(
        ["test"], description="Splits released only once every patch has a curator's decision (geopixeld curate).")
    name: str = Field("GeoPixelD (geopixeld build)", description="Dataset name on the card.")
    license: str = Field("cc-by-4.0", description="License on the card (GeoPixelD is CC-BY-4.0).")
    synthetic: bool = Field(False, description="The rows come from synthetic data: the card and the manifest say so. "
                            "The build sets it when its source is synthetic (false cannot hide that).")


@dataclass
class SplitResult:
    split: str
    released: bool
    rows: int = 0
    shards_written: int = 0
    shards_skipped: int = 0
    stats: Counter = field(default_factory=Counter)
    held_back: str | None = None  # why a split is not released


@dataclass
class DatasetSummary:
    folder: Path
    splits: dict[str, SplitResult]

    def table(self) -> str:
        lines = [f"Dataset in {self.folder}", f"  {'split':<8}{'rows':>8}{'phrases':>9}{'shards':>8}  note"]
        for s in self.splits.values():
            note = s.held_back or f"{s.shards_skipped} shards unchanged"
            lines.append(f"  {s.split:<8}{s.rows:>8}{s.stats['phrases']:>9}{s.shards_written + s.shards_skipped:>8}  {note}")
        return "\n".join(lines)


def dataset_folder(out: Path, settings: DatasetSettings) -> Path:
    return dataset_dir(out, settings.folder)


def curation_gate(out: Path, split: str, settings: DatasetSettings):
    """(why the split must be held back or None, the curation summary or None when the split needs none)."""
    if split not in settings.require_curation:
        return None, None
    from pipeline.curation import curation_summary  # noqa: PLC0415 (imported only when a split needs it)

    s = curation_summary(Path(out), split)
    if s.complete:
        return None, s
    return f"held back: curation required, {s.decided} of {s.patches} patches decided (geopixeld curate)", s


# record columns a dataset row keeps as the record writes them (GCG and dataset schemas type them alike)
_AS_RECORDED = (*GEOREF_COLUMNS, "holistic", "instance_texts", "group_texts", "dropped", "checks", "provenance",
                "curation_status")


def dataset_row(record: GCGRecord, image_path: str, image_bytes: bytes | None) -> dict:
    """One dataset row from a grounded record, which carries its plan's georeference (pure)."""
    phrases, mask_rows = [], []
    for i, p in enumerate(record.phrases):
        phrases.append({"tag": p.tag, "start": p.start, "end": p.end, "tier": p.tier, "mask_id": i})
        mask_rows.append({"mask_id": i, "tier": p.tier, "category": p.category, "object_ids": list(p.object_ids),
                          "bbox": list(masks.bbox(p.rle)), "area": masks.area(p.rle), "rle": p.rle})
    row = record.to_row()
    return {
        **{k: row[k] for k in _AS_RECORDED}, "schema_version": DATASET_SCHEMA_VERSION, "patch_id": record.patch_id,
        "split": record.split, "image": {"bytes": image_bytes, "path": image_path}, "width": record.width,
        "height": record.height, "description": record.description, "caption": strip_tags(record.description),
        "phrases": phrases, "masks": mask_rows,
    }


def split_stats(rows: list[dict], records: list[GCGRecord]) -> Counter:
    """The card's statistics of one shard (summed over shards)."""
    c = Counter(records=len(records), failed=sum(r.status != "ok" for r in records),
                rejected=sum(r.curation_status == "rejected" for r in records))
    for r in rows:
        c["patches"] += 1
        c["holistic"] += r["holistic"] is not None
        c["instance"] += sum(p["tier"] == "instance" for p in r["phrases"])
        c["group"] += sum(p["tier"] == "group" for p in r["phrases"])
        c["group_objects"] += sum(len(m["object_ids"]) for m in r["masks"] if m["tier"] == "group")
        c["phrases"] += len(r["phrases"])
        c["objects"] += len({o for m in r["masks"] for o in m["object_ids"]})
        c["caption_chars"] += len(r["description"])
        c["dropped"] += len(r["dropped"])
        c[f"drafter: {r['provenance']['drafter']}"] += 1
        c[f"curation: {r['curation_status']}"] += 1
        if r["checks"] is not None:  # verified: the card counts the flags per check and per tier
            c["verified"] += 1
            c["flagged"] += bool(r["checks"])
            for ch in r["checks"]:
                c[f"flag check: {ch['check']}"] += 1
                c[f"flag tier: {ch['tier']}"] += 1
    return c


def _place_image(src: Path, dst: Path, entry: dict | None) -> None:
    """Hard-link (or copy) a patch PNG into the dataset, atomically; a file already there is kept when it is the
    same file or matches planning's `entry` (size and sha256)."""
    if dst.exists() and (dst.samefile(src) or (entry is not None and check_file(dst, entry) is None)):
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        tmp.write_bytes(src.read_bytes())
    os.replace(tmp, dst)


def write_split(out: Path, split: str, folder: Path, settings: DatasetSettings, manifest: dict) -> SplitResult:
    """Write (or bring up to date) one split's dataset shards; the caller writes the manifest and card."""
    out = Path(out)
    entry = manifest["splits"].setdefault(split, {"shards": {}})
    why, curation = curation_gate(out, split, settings)
    if why:
        for name in list(entry["shards"]):  # a split released earlier and now held back is withdrawn
            (folder / name).unlink(missing_ok=True)
        remove_unnamed(folder / "images" / split, set())
        manifest["splits"][split] = {"shards": {}, "held_back": why, "source_split": planned_from(out, split)}
        return SplitResult(split, False, held_back=why)
    entry.pop("held_back", None)
    rec_dir = records_source(out, split)
    rec_manifest = require_complete(rec_dir, RecordsNotReady, f"draft split {split!r} first (geopixeld draft)")
    shards = ShardManifest(folder, manifest, shards=entry["shards"])
    result = SplitResult(split, True)
    files = planned_files(out, split)
    wanted, images = {}, set()
    for rec_name in sorted(rec_manifest["shards"]):
        k = rec_name.split("-")[-1].split(".")[0]
        name = f"data/{split}/{split}-{k}.parquet"
        wanted[name] = True
        source = {"records": str(rec_dir.relative_to(os.path.realpath(out)) / rec_name), "sha256": rec_manifest["shards"][rec_name]["sha256"],
                  "embed_images": settings.embed_images}
        old = entry["shards"].get(name)
        if shards.finished(name, source) and "images" in old:
            result.shards_skipped += 1
            images.update(old["images"])
            result.stats.update(old["stats"])
            result.rows += old["rows"]
            continue
        records = records_from_table(pq.read_table(require_intact(
            rec_dir, rec_manifest, rec_name, RecordsNotReady,
            f"run `geopixeld draft` for split {split!r} again (it redrafts changed shards)")))
        rows = []
        for r in records:
            if not r.released:
                continue
            if r.source_image is None:  # a record of GCG schema 1 or 2: drafting again writes the georeference
                raise RecordsNotReady(f"{rec_dir / rec_name}: record {r.patch_id!r} carries no georeference (a record "
                                      f"of an earlier schema); draft split {split!r} again")
            img_rel = None
            img_bytes = None
            if r.image_path:
                src = planned_image(out, split, r.image_path, files, f"record {r.patch_id!r} of {rec_dir / rec_name}")
                img_rel = f"images/{split}/{Path(r.image_path).name}"
                images.add(img_rel)
                _place_image(src, folder / img_rel, files.get(r.image_path))
                img_bytes = src.read_bytes() if settings.embed_images else None
            rows.append(dataset_row(r, img_rel, img_bytes))
        stats = split_stats(rows, records)
        sha = write_table(pa.Table.from_pylist(rows, schema=DATASET_SCHEMA), folder / name)
        named = sorted(row["image"]["path"] for row in rows if row["image"]["path"])
        shards.record(name, {"sha256": sha, "rows": len(rows), "source": source, "stats": dict(stats),
                             "images": named})  # recorded at once: a killed build keeps it
        result.shards_written += 1
        result.rows += len(rows)
        result.stats.update(stats)
    shards.drop(set(wanted))  # dataset shards whose record shard no longer exists
    remove_unnamed(folder / "images" / split, {folder / i for i in images})  # images of records no longer released
    entry["rows"] = result.rows
    entry["stats"] = dict(result.stats)
    entry["source_split"] = planned_from(out, split)  # the card: "test <- val"
    entry["verification"] = rec_manifest.get("verification")  # policy and settings fingerprint, or None
    if curation is not None:  # the card counts what the curators decided
        entry.update(phrases_accepted=curation.phrases_accepted, phrases_edited=curation.phrases_edited,
                     phrases_rejected=curation.phrases_rejected)
    return result


def write_dataset(out: Path, splits: list[str], settings: DatasetSettings | None = None, progress=None) -> DatasetSummary:
    """Write every split, then the manifest, the card and the GeoPixelD layout. `progress(split)` is called per split."""
    settings = settings or DatasetSettings()
    folder = dataset_folder(out, settings)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(folder) or {"kind": "geopixeld-dataset", "splits": {}}
    manifest.update(schema_version=DATASET_SCHEMA_VERSION, complete=False)
    write_manifest(folder, manifest)
    results = {}
    for split in splits:
        results[split] = write_split(out, split, folder, settings, manifest)
        if progress:
            progress(split)
    if settings.export_geopixeld:
        for split, r in results.items():
            if r.released:
                export_split(out, split, folder / "geopixeld", prune=True)
    manifest["synthetic"] = settings.synthetic  # the card says so too
    atomic_write_bytes(folder / "README.md", render_card(settings.name, settings.license, manifest).encode())
    manifest["complete"] = True
    manifest["rows"] = sum(s.get("rows", 0) for s in manifest["splits"].values())
    write_manifest(folder, manifest)
    return DatasetSummary(folder, results)


def verify(folder: Path) -> list[str]:
    """Problems with a dataset folder: shards missing or not matching the manifest's checksums."""
    m = read_manifest(Path(folder))
    if not m:
        return [f"{Path(folder) / MANIFEST}: missing"]
    problems = []
    for split, entry in m["splits"].items():
        for name, e in entry.get("shards", {}).items():
            path = Path(folder) / name
            if not path.is_file():
                problems.append(f"{path}: missing")
            elif sha256_file(path) != e["sha256"]:
                problems.append(f"{path}: checksum differs from the manifest")
    return problems
