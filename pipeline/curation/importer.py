"""`geopixeld curate import`: decision files into the ledger, then the curated shards recomputed.

Every file is checked before anything is written: it must parse (decisions.py), name an export of this output
folder, a sheet of that export, and only patches of that sheet with the content hash the export recorded, which
must still be the record's content now; phrases must be phrases of their patch, and every edited sentence must
still ground (its phrases resolve to their masks); every time must be in the sane range (decisions.py: not before
2020, not more than a day after the import). The ledgers the files go to are read whole first, so a damaged one
stops the import before anything is written. A file already in the ledger is skipped, so importing it again
changes nothing (but brings curated/ up to date when it is not).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.contracts.gcg_schema import GCGRecord, records_from_table
from pipeline.curation import ledger
from pipeline.curation.content import check_edit, content_hash, normalize_text, segments
from pipeline.curation.curated import Computation, fresh, rebuild
from pipeline.curation.decisions import MAX_BYTES, DecisionFile, DecisionFileError, read_decision_file
from pipeline.curation.export import read_export
from pipeline.contracts.layout import exports_dir, records_dir


class CuratedNotWritten(ValueError):
    """The decisions are in the ledger but the curated shards could not be recomputed (importing again retries)."""


@dataclass
class ImportResult:
    files: list[tuple[Path, str]] = field(default_factory=list)  # (file, "imported" | "already imported")
    decisions: int = 0  # ledger rows added
    curated: dict[str, Computation] = field(default_factory=dict)  # split -> the recomputed curation

    def table(self) -> str:
        lines = [f"  {status:<17} {path}" for path, status in self.files]
        lines.insert(0, f"Decision files ({self.decisions} decisions recorded in the ledger):")
        for split, c in self.curated.items():
            lines.append(c.summary.table())
            lines.append(f"  curated shards in {c.folder}/ ({c.written} written, {c.unchanged} unchanged)")
            for conflict in c.conflicts[:20]:
                lines.append(f"  disagreement: {conflict.line()}")
            if len(c.conflicts) > 20:
                lines.append(f"  ... and {len(c.conflicts) - 20} more disagreements (curated/_manifest.json lists all)")
        return "\n".join(lines)


class _Records:
    """Current records of a split by patch id, loaded once per record shard."""

    def __init__(self, out: Path, split: str):
        self.dir, self.loaded, self.rows = records_dir(out, split), set(), {}

    def get(self, shard: str, patch_id: str) -> GCGRecord | None:
        if shard not in self.loaded:
            path = self.dir / shard
            if path.is_file():
                self.rows.update({r.patch_id: r for r in records_from_table(pq.read_table(path))})
            self.loaded.add(shard)
        return self.rows.get(patch_id)


def _check(path: Path, df: DecisionFile, out: Path, records: _Records) -> None:
    """Refuse a file that points outside its export or whose edits do not ground (DecisionFileError)."""
    where = exports_dir(out, df.split) / df.export_id
    try:
        export = read_export(out, df.split, df.export_id)
    except ValueError as exc:
        raise DecisionFileError(f"{path}: {exc}") from exc
    if export is None:
        raise DecisionFileError(f"{path}: export {df.export_id} of split {df.split!r} is not in {where.parent}/ "
                                "(the file belongs to another export or output folder)")
    sheet = next((s for s in export["sheets"] if s["sheet_id"] == df.sheet_id), None)
    if sheet is None or sheet["file"] != df.sheet_file:
        raise DecisionFileError(f"{path}: sheet {df.sheet_id} ({df.sheet_file}) is not a sheet of export {df.export_id}")
    in_sheet = set(sheet["patches"])
    for p in df.patches:
        where = f"{path}: patch {p.patch_id!r}"
        if p.patch_id not in in_sheet:
            raise DecisionFileError(f"{where} is not on sheet {df.sheet_id}")
        entry = export["patches"][p.patch_id]
        if p.content_sha256 != entry["content_sha256"]:
            raise DecisionFileError(f"{where}: content hash differs from the one exported on sheet {df.sheet_id}")
        rec = records.get(entry["records_shard"], p.patch_id)
        if rec is None or content_hash(rec) != entry["content_sha256"]:
            raise DecisionFileError(f"{where}: the record was drafted again after export {df.export_id}; "
                                    "export new sheets for it (geopixeld curate export)")
        tags = set(entry["tags"])
        rejected = {d.tag for d in p.phrases if d.decision == "reject"}
        for d in p.phrases:
            if d.tag not in tags:
                raise DecisionFileError(f"{where}: phrase {d.tag!r} is not a phrase of this patch")
            if d.decision != "edit":
                continue
            seg = next(s for s in segments(rec.description) if d.tag in s.tags)
            why = check_edit(normalize_text(d.text), seg.tags, set(seg.tags) - rejected, d.tag)
            if why:
                raise DecisionFileError(f"{where}, phrase {d.tag!r}: the edited text does not ground: {why}")


def _rows(df: DecisionFile, sha: str, name: str, imported_at: datetime) -> list[dict]:
    base = {"decision_file_sha256": sha, "decision_file": name, "export_id": df.export_id, "sheet_id": df.sheet_id,
            "split": df.split, "curator": df.curator, "saved_at": df.saved_at, "imported_at": imported_at}
    rows = []
    for p in df.patches:
        item = {"patch_id": p.patch_id, "content_sha256": p.content_sha256}
        if p.decision:
            rows.append({**base, **item, "seq": len(rows), "level": "patch", "tag": None, "decision": p.decision,
                         "text": p.note or None, "decided_at": p.at})
        for d in p.phrases:
            rows.append({**base, **item, "seq": len(rows), "level": "phrase", "tag": d.tag, "decision": d.decision,
                         "text": normalize_text(d.text) if d.text is not None else None, "decided_at": d.at})
    return rows


def import_decisions(out: Path, files: list[Path], policy: str | None = None, max_bytes: int = MAX_BYTES) -> ImportResult:
    """Check every file, then record the new ones in the ledger and recompute the curated shards of their splits."""
    out = Path(out)
    if not files:
        raise DecisionFileError("no decision files given")
    now = datetime.now(timezone.utc)  # the import time: bounds every decision's time, and is recorded
    parsed, seen, result = [], set(), ImportResult()
    records: dict[str, _Records] = {}
    for f in files:
        df, data = read_decision_file(Path(f), max_bytes, now)
        sha = hashlib.sha256(data).hexdigest()
        if sha in seen:
            result.files.append((Path(f), "already imported"))
            continue
        seen.add(sha)
        try:
            records.setdefault(df.split, _Records(out, df.split))
        except ValueError as exc:
            raise DecisionFileError(f"{f}: {exc}") from exc
        _check(Path(f), df, out, records[df.split])
        parsed.append((Path(f), df, sha))
    for split in dict.fromkeys(df.split for _, df, _ in parsed):
        ledger.read(out, split, now)  # a damaged ledger is a LedgerError here, before anything is appended
    imported_at = now
    splits = []
    for f, df, sha in parsed:
        if ledger.imported(out, df.split, sha):
            result.files.append((f, "already imported"))
            continue
        rows = _rows(df, sha, f.name, imported_at)
        ledger.append(out, df.split, sha, rows, {"decision_file": f.name, "curator": df.curator,
                                                 "sheet_id": df.sheet_id, "imported_at": imported_at.isoformat()})
        result.files.append((f, "imported"))
        result.decisions += len(rows)
        if df.split not in splits:
            splits.append(df.split)
    for f, df, _ in parsed:  # a new policy, or curated shards missing or stale, also means recomputing
        if df.split not in splits and fresh(out, df.split, policy) is None:
            splits.append(df.split)
    for split in splits:
        try:
            result.curated[split] = rebuild(out, split, policy)
        except ValueError as exc:
            raise CuratedNotWritten(f"{exc} (the decisions are recorded in the ledger, but {split}/curated was not "
                                    "brought up to date: fix this, then import any of the files again)") from exc
    return result
