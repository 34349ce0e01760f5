"""The decisions ledger: every imported decision, with who made it, when, and from which file (Parquet).

One shard per decision file, named by the file's sha256, so importing a file twice finds its shard and changes
nothing; shards are only ever added. The curated records are recomputed from the whole ledger.

Every read checks the ledger whole (the manifest parses, each shard is there with the manifest's checksum, no
shard is left out of the manifest, each parses with the ledger's schema and sane times), so a damaged ledger
stops every command with a `LedgerError` naming the file and `geopixeld curate repair`, never a traceback or a
ledger read in part. `repair` keeps every intact shard, moves the others into `damaged/` (nothing is deleted),
rebuilds the manifest from the shards and names the decision files to import again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from pipeline.contracts.layout import ledger_dir
from pipeline.contracts.fileio import sha256_file
from pipeline.contracts.shards import MANIFEST, read_manifest, write_manifest, write_table
from pipeline.curation.decisions import EARLIEST, SKEW

KIND = "geopixeld-curation-ledger"
DAMAGED = "damaged"  # the subfolder `repair` moves unusable shards and manifests into
_SHARDS = "decisions-*.parquet"
_TS = pa.timestamp("us", tz="UTC")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
LEDGER_SCHEMA = pa.schema(
    [
        ("decision_file_sha256", pa.string()),  # the file as downloaded from the sheet
        ("decision_file", pa.string()),  # its name when imported
        ("export_id", pa.string()),
        ("sheet_id", pa.string()),
        ("split", pa.string()),
        ("curator", pa.string()),
        ("saved_at", _TS),  # when the sheet wrote the file
        ("imported_at", _TS),
        ("seq", pa.int32()),  # order within the file
        ("patch_id", pa.string()),
        ("content_sha256", pa.string()),  # the record the decision was made on
        ("level", pa.string()),  # "patch" or "phrase"
        ("tag", pa.string()),  # the phrase (null for a patch decision)
        ("decision", pa.string()),  # patch: accept | reject | flag; phrase: accept | reject | edit
        ("text", pa.string()),  # the edited sentence, or the patch's note
        ("decided_at", _TS),  # when the curator decided (the browser's clock)
    ],
    metadata={"geopixeld.kind": "curation-ledger", "geopixeld.schema_version": "1"},
)


class LedgerError(ValueError):
    """The ledger of a split is damaged; the message names the file and the command that repairs it."""


class _Entry(BaseModel):
    model_config = ConfigDict(extra="allow")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    rows: int = Field(ge=0)
    decision_file: str | None = None


class _Manifest(BaseModel):
    """What a ledger manifest must hold to be used (shard names cannot point outside the folder)."""

    model_config = ConfigDict(extra="allow")
    kind: Literal["geopixeld-curation-ledger"]
    shards: dict[Annotated[str, StringConstraints(pattern=r"^decisions-[0-9a-f]{24}\.parquet$")], _Entry]


def shard_name(file_sha256: str) -> str:
    return f"decisions-{file_sha256[:24]}.parquet"


def _hint(out: Path, split: str) -> str:
    return (f"repair it with `geopixeld curate repair {out} --split {split}` (it keeps every intact shard and names "
            "the decision files to import again)")


def _manifest(out: Path, split: str) -> dict | None:
    """The ledger manifest (None before any import); LedgerError when it is unreadable or malformed."""
    path = ledger_dir(out, split) / MANIFEST
    try:
        m = read_manifest(path.parent)
        if m is not None:
            _Manifest.model_validate(m)
    except ValidationError as exc:
        e = exc.errors()[0]
        why = f"{'.'.join(str(x) for x in e['loc']) or '(top)'}: {e['msg']}"
        raise LedgerError(f"{path}: not a valid ledger manifest ({why}); {_hint(out, split)}") from None
    except ValueError as exc:
        raise LedgerError(f"{path}: ledger manifest is unreadable (truncated or not JSON); {_hint(out, split)}") from exc
    return m


def _times_problem(t: pa.Table, now: datetime) -> str | None:
    """Why a shard's times are not sane, else None (pure): a null time, one before EARLIEST, an import after `now`
    (+ SKEW) or a decision or save more than SKEW after its import. Checked on the integers, before any conversion
    to Python (which fails past year 9999)."""
    us = {n: t.column(n).cast(pa.int64()) for n in ("saved_at", "imported_at", "decided_at")}
    micro = timedelta(microseconds=1)
    skew, lo = SKEW // micro, (EARLIEST - _EPOCH) // micro
    hi = {"imported_at": pa.scalar((now - _EPOCH) // micro + skew, pa.int64())}
    hi["saved_at"] = hi["decided_at"] = pc.add(us["imported_at"], skew)
    for name, col in us.items():
        bad = pc.or_kleene(pc.is_null(col), pc.or_(pc.less(col, lo), pc.greater(col, hi[name])))
        if pc.any(bad).as_py():
            i = pc.index(bad, True).as_py()
            return (f"row {i} (patch {t.column('patch_id')[i].as_py()!r}): {name} is not between "
                    f"{EARLIEST.date()} and a day after its import")
    return None


def _load(path: Path, now: datetime) -> list[dict]:
    """The rows of one shard; ValueError says why they cannot be used."""
    try:
        t = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise ValueError(f"not a readable Parquet file: {exc}") from exc
    if not t.schema.equals(LEDGER_SCHEMA, check_metadata=False):
        raise ValueError("its columns are not the ledger's")
    why = _times_problem(t, now)
    if why:
        raise ValueError(why)
    return t.to_pylist()


def _checked(out: Path, split: str, m: dict | None) -> dict[str, str]:
    """{shard: sha256} after checking every listed shard's checksum and that no shard is unlisted (LedgerError)."""
    folder = ledger_dir(out, split)
    listed = (m or {}).get("shards", {})
    for name, entry in sorted(listed.items()):
        path = folder / name
        if not path.is_file():
            raise LedgerError(f"{path}: ledger shard is missing (of decision file {entry.get('decision_file')!r}); "
                              + _hint(out, split))
        if sha256_file(path) != entry["sha256"]:
            raise LedgerError(f"{path}: ledger shard differs from its checksum in {folder / MANIFEST}; " + _hint(out, split))
    unlisted = sorted(p.name for p in folder.glob(_SHARDS) if p.name not in listed) if folder.is_dir() else []
    if unlisted:
        raise LedgerError(f"{folder / unlisted[0]}: ledger shard is not listed in {folder / MANIFEST}; " + _hint(out, split))
    return {n: e["sha256"] for n, e in listed.items()}


def imported(out: Path, split: str, file_sha256: str) -> bool:
    m = _manifest(out, split)
    return bool(m and shard_name(file_sha256) in m["shards"])


def append(out: Path, split: str, file_sha256: str, rows: list[dict], info: dict) -> str:
    """Write one decision file's rows as a new ledger shard, then list it in the ledger manifest."""
    folder = ledger_dir(out, split)
    name = shard_name(file_sha256)
    sha = write_table(pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA), folder / name)
    m = _manifest(out, split) or {"kind": KIND, "schema_version": 1, "shards": {}}
    m["shards"][name] = {"sha256": sha, "rows": len(rows), "decision_file_sha256": file_sha256, **info}
    m["rows"] = sum(e["rows"] for e in m["shards"].values())
    write_manifest(folder, m)
    return name


def shards(out: Path, split: str) -> dict[str, str]:
    """{shard: sha256} as the ledger manifest lists them (empty before any import), each checked on disk."""
    return _checked(out, split, _manifest(out, split))


def read(out: Path, split: str, now: datetime | None = None) -> tuple[list[dict], dict]:
    """All ledger rows of a split and {shard: sha256}; any damage is a LedgerError naming the file."""
    folder = ledger_dir(out, split)
    m = _manifest(out, split)
    shas = _checked(out, split, m)
    now = now or datetime.now(timezone.utc)
    rows = []
    for name in sorted(shas):
        try:
            rows.extend(_load(folder / name, now))
        except ValueError as exc:
            raise LedgerError(f"{folder / name}: ledger shard is damaged ({exc}); {_hint(out, split)}") from None
    return rows, shas


def table(out: Path, split: str) -> pa.Table:
    """The whole ledger as one table (empty, with the schema, before any import)."""
    rows, _ = read(out, split)
    return pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA)


@dataclass
class Repair:
    """What `repair` did: shards kept, files moved into damaged/ (with why) and the decision files to import again."""

    folder: Path
    kept: list[str] = field(default_factory=list)
    moved: list[tuple[Path, str]] = field(default_factory=list)
    reimport: list[str] = field(default_factory=list)
    manifest_written: bool = False

    def table(self) -> str:
        lines = [f"Ledger {self.folder}: {len(self.kept)} shards intact"]
        lines += [f"  moved aside  {p}  ({why})" for p, why in self.moved]
        if self.manifest_written:
            lines.append(f"  manifest     {self.folder / MANIFEST} rewritten from the intact shards")
        if self.reimport:
            lines.append("Import these decision files again (geopixeld curate import OUT FILE...):")
            lines += [f"  {name}" for name in self.reimport]
        elif not self.moved and not self.manifest_written:
            lines.append("  nothing to repair")
        return "\n".join(lines)


def _move_aside(path: Path) -> Path:
    """Move a damaged file into damaged/ (renamed, never overwritten) so that its bytes are kept."""
    dest_dir = path.parent / DAMAGED
    dest_dir.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    dest = dest_dir / f"{path.name}.{stamp}"
    os.replace(path, dest)
    return dest


def repair(out: Path, split: str) -> Repair:
    """Make the ledger usable again without losing a byte: intact shards stay (and are listed, even when the
    manifest was lost), damaged ones and a damaged manifest move into damaged/, and the decision files whose
    decisions left the ledger are named for import again."""
    folder = ledger_dir(Path(out), split)
    r = Repair(folder)
    if not folder.is_dir():
        return r
    try:
        m = _manifest(out, split)
    except LedgerError:
        m = None
        r.moved.append((_move_aside(folder / MANIFEST), "unreadable manifest"))
    old = (m or {}).get("shards", {})
    now = datetime.now(timezone.utc)
    entries = {}
    for name in sorted(set(old) | {p.name for p in folder.glob(_SHARDS)}):
        path, entry = folder / name, old.get(name)
        why, rows = None, []
        if not path.is_file():
            why = "missing"
        elif entry and sha256_file(path) != entry["sha256"]:
            why = "differs from its checksum in the manifest"
        else:
            try:
                rows = _load(path, now)
            except ValueError as exc:
                why = str(exc)
        if why is None:
            first = rows[0] if rows else {}
            entries[name] = entry or {"sha256": sha256_file(path), "rows": len(rows),
                                      "decision_file_sha256": first.get("decision_file_sha256"),
                                      "decision_file": first.get("decision_file"), "curator": first.get("curator"),
                                      "sheet_id": first.get("sheet_id"),
                                      "imported_at": first["imported_at"].isoformat() if rows else None}
            r.kept.append(name)
            continue
        if path.is_file():
            r.moved.append((_move_aside(path), why))
        r.reimport.append(f"{entry.get('decision_file')} (curator {entry.get('curator')!r}, sha256 "
                          f"{entry.get('decision_file_sha256')})" if entry else
                          f"the decision file whose sha256 starts with {name[10:34]} (its manifest entry was lost)")
    if m is None and not entries and not r.moved:
        return r
    new = {**(m or {"kind": KIND, "schema_version": 1}), "shards": entries,
           "rows": sum(e["rows"] for e in entries.values())}
    if new != m:
        write_manifest(folder, new)
        r.manifest_written = True
    return r
