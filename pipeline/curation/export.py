"""`geopixeld curate export`: the sheets of a split (or of a filter over it) and the export manifest.

An export lives in OUT/<split>/curation/exports/<export_id>/: `sheet-NNNNN.html` (each self-contained), an
`index.html` listing them, and `export.json` (written last) with every patch's content hash, its sheet and its
tags, which `curate import` checks decision files against. The export id is a hash of the patches and their
content, so exporting the same selection again finds the export already written.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from pipeline import __version__ as _version
from pipeline.contracts.gcg_schema import GCGRecord, records_from_table
from pipeline.contracts.fileio import UnsafePath, atomic_write_bytes, resolve_inside, sha256_file
from pipeline.contracts.shards import RecordsNotReady
from pipeline.curation.content import content_hash
from pipeline.contracts.layout import drafted_records, exports_dir, split_dir
from pipeline.curation.render import PatchView, render_index, render_sheet

EXPORT_FORMAT = "geopixeld-curation-export"
GENERATOR = f"geopixeld {_version}"



class ExportFilter(BaseModel):
    """Which records of a split go into the sheets."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["ok", "failed", "any"] = Field("ok", description="Grounded records (ok), those that failed "
                                                   "validation (failed), or both.")
    drafter: Literal["any", "template", "lmm", "replay"] = Field("any", description="Only records drafted by this drafter.")
    undecided: bool = Field(True, description="Leave out patches that already have a curator's decision.")
    patch_ids: list[str] = Field(default_factory=list, description="Only these patches (empty: all).")
    limit: int | None = Field(None, ge=1, description="At most this many patches.")
    flagged: bool = Field(False, description="Only patches with a failed verification check.")
    order: Literal["records", "risk"] = Field("records", description="records: the records' order; risk: the most "
                                              "failed verification checks first (then the records' order).")


class SheetSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    per_sheet: int = Field(50, ge=1, le=500, description="Patches per sheet.")
    image_format: Literal["jpeg", "png"] = Field("jpeg", description="How patch images are embedded: JPEG "
                                                 "(smaller sheets) or the patch PNG as it is.")
    jpeg_quality: int = Field(90, ge=30, le=100)


@dataclass
class ExportResult:
    split: str
    export_id: str | None  # None: no record matched the filter
    folder: Path | None
    sheets: list[Path] = field(default_factory=list)
    patches: int = 0
    existing: bool = False  # the same export was already written

    def table(self) -> str:
        if not self.export_id:
            return f"Nothing to export for split {self.split!r}: no record matches the filter."
        head = (f"{'Already exported' if self.existing else 'Exported'} {self.patches} patches of split {self.split!r} "
                f"in {len(self.sheets)} sheets: {self.folder}/")
        lines = [head] + [f"  {p.name}" for p in self.sheets]
        lines.append("Open a sheet in a browser (file://, no server), decide, press d to download the decisions, "
                     "then: geopixeld curate import OUT DECISIONS.json ...")
        return "\n".join(lines)


def _image(split_root: Path, record: GCGRecord, settings: SheetSettings) -> tuple[str, bytes] | None:
    if not record.image_path:
        return None
    try:
        path = resolve_inside(split_root, record.image_path)
    except UnsafePath as exc:
        raise RecordsNotReady(f"record {record.patch_id!r}: {exc}") from exc
    if not path.is_file():
        raise RecordsNotReady(f"{path}: patch image of record {record.patch_id!r} is missing")
    if settings.image_format == "png" and path.suffix.lower() == ".png":
        return "image/png", path.read_bytes()
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise RecordsNotReady(f"{path}: patch image of record {record.patch_id!r} cannot be decoded")
    if settings.image_format == "png":
        ok, buf = cv2.imencode(".png", img)
        return "image/png", buf.tobytes()
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, settings.jpeg_quality])
    if not ok:
        raise RecordsNotReady(f"{path}: JPEG encoding failed for record {record.patch_id!r}")
    return "image/jpeg", buf.tobytes()


def risk(record: GCGRecord) -> int:
    """How risky a patch is for `--order risk`: its failed verification checks (a failed record counts as many as
    its planned phrases, since nothing of it grounded)."""
    return len(record.checks or []) + (len(record.dropped) if record.status != "ok" else 0)


def select(records: list[GCGRecord], flt: ExportFilter, decided: set[str]) -> list[GCGRecord]:
    """The records a filter keeps, in record order (pure)."""
    wanted = set(flt.patch_ids)
    out = []
    for r in records:
        if flt.status != "any" and r.status != flt.status:
            continue
        if flt.drafter != "any" and (r.provenance.drafter if r.provenance else None) != flt.drafter:
            continue
        if flt.undecided and r.patch_id in decided:
            continue
        if wanted and r.patch_id not in wanted:
            continue
        if flt.flagged and not r.checks:
            continue
        out.append(r)
    return out[: flt.limit] if flt.limit else out


def export_sheets(out: Path, split: str, flt: ExportFilter | None = None, settings: SheetSettings | None = None,
                  policy: str | None = None) -> ExportResult:
    """Write the sheets of the records `flt` selects; returns where they are."""
    from pipeline.curation.curated import compute  # the decisions so far decide what "undecided" leaves out

    flt, settings = flt or ExportFilter(), settings or SheetSettings()
    out = Path(out)
    rec_dir, rec_manifest = drafted_records(out, split)
    decided = set()
    if flt.undecided:
        decided = {pid for pid, s in compute(out, split, policy).statuses.items() if s != "pending"}
    chosen: list[tuple[str, GCGRecord]] = []
    every = flt.model_copy(update={"limit": None}) if flt.order == "risk" else flt  # the riskiest of all, then the limit
    for name in sorted(rec_manifest["shards"]):
        recs = records_from_table(pq.read_table(rec_dir / name))
        chosen += [(name, r) for r in select(recs, every, decided)]
    if flt.order == "risk":
        chosen.sort(key=lambda nr: -risk(nr[1]))  # stable: ties keep the records' order
    if flt.limit:
        chosen = chosen[: flt.limit]
    unknown = set(flt.patch_ids) - {r.patch_id for _, r in chosen}
    if unknown and not flt.limit:
        raise RecordsNotReady(f"{rec_dir}: no record (matching the filter) for patch(es) {', '.join(sorted(unknown)[:5])}")
    if not chosen:
        return ExportResult(split, None, None)
    hashes = {r.patch_id: content_hash(r) for _, r in chosen}
    key = json.dumps({"split": split, "settings": settings.model_dump(), "patches": [[r.patch_id, hashes[r.patch_id]]
                                                                                        for _, r in chosen],
                      # the sheets show the flags: verified again with other findings, they are written again
                      "checks": [[r.patch_id, [[c.tier, c.tag, c.check, c.detail] for c in r.checks or []]]
                                 for _, r in chosen if r.checks]})
    export_id = hashlib.sha256(key.encode()).hexdigest()[:16]
    folder = exports_dir(out, split) / export_id
    done = _existing(folder)
    if done is not None:
        return ExportResult(split, export_id, folder, [folder / s["file"] for s in done["sheets"]], len(done["patches"]), True)
    plans = _marks(split_dir(out, split) / "plans", {name for name, _ in chosen})
    split_root = split_dir(out, split)
    chunks = [chosen[i : i + settings.per_sheet] for i in range(0, len(chosen), settings.per_sheet)]
    sheets, patches = [], {}
    for no, chunk in enumerate(chunks):
        sheet_id, file = f"{export_id}-{no:05d}", f"sheet-{no:05d}.html"
        views = [PatchView(r, hashes[r.patch_id], _image(split_root, r, settings), plans.get(r.patch_id, []))
                 for _, r in chunk]
        html = render_sheet(views, export_id=export_id, sheet_id=sheet_id, sheet_file=file, split=split, sheet_no=no,
                            sheets=len(chunks), generator=GENERATOR).encode()
        atomic_write_bytes(folder / file, html)
        sheets.append({"sheet_id": sheet_id, "file": file, "sha256": hashlib.sha256(html).hexdigest(),
                       "patches": [r.patch_id for _, r in chunk]})
        for name, r in chunk:
            patches[r.patch_id] = {"sheet_id": sheet_id, "content_sha256": hashes[r.patch_id], "records_shard": name,
                                   "tags": [p.tag for p in r.phrases]}
    atomic_write_bytes(folder / "index.html", render_index(split, export_id, sheets).encode())
    manifest = {"kind": EXPORT_FORMAT, "version": 1, "export_id": export_id, "split": split, "generator": GENERATOR,
                "filter": flt.model_dump(), "settings": settings.model_dump(),
                "records": {n: rec_manifest["shards"][n]["sha256"] for n in sorted({n for n, _ in chosen})},
                "sheets": sheets, "patches": patches}
    atomic_write_bytes(folder / "export.json", (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
    return ExportResult(split, export_id, folder, [folder / s["file"] for s in sheets], len(patches))


def _existing(folder: Path) -> dict | None:
    """The manifest of a finished export whose sheets are all intact, else None (it is then written again)."""
    try:
        m = json.loads((folder / "export.json").read_text())
    except (OSError, ValueError):
        return None
    for s in m.get("sheets", []):
        p = folder / s["file"]
        if not p.is_file() or sha256_file(p) != s["sha256"]:
            return None
    return m


def read_export(out: Path, split: str, export_id: str) -> dict | None:
    """An export's manifest (None when there is no such export); the id is checked before it names a folder."""
    import re

    if not re.fullmatch(r"[0-9a-f]{16}", export_id):
        return None
    path = exports_dir(out, split) / export_id / "export.json"
    try:
        m = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: export manifest is unreadable ({exc})") from exc
    if m.get("kind") != EXPORT_FORMAT or m.get("export_id") != export_id or m.get("split") != split:
        raise ValueError(f"{path}: not the manifest of export {export_id} of split {split!r}")
    return m


def _marks(plans_dir: Path, record_shards: set[str]) -> dict[str, list[dict]]:
    """Set-of-marks squares per patch, from the plan shards the chosen record shards came from."""
    out = {}
    for name in sorted(record_shards):
        path = plans_dir / name.replace("records-", "plans-")
        if not path.is_file():
            continue  # marks are a help to the curator, not a requirement
        for row in pq.read_table(path, columns=["patch_id", "marks"]).to_pylist():
            out[row["patch_id"]] = row["marks"] or []
    return out


def export_summary(result: ExportResult) -> dict:
    d = asdict(result)
    d["folder"] = str(result.folder) if result.folder else None
    d["sheets"] = [str(p) for p in result.sheets]
    return d
