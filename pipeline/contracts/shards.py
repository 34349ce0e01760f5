"""Parquet shards written atomically, and the manifest that makes a rerun skip finished shards.

A shard is written to a temporary file, fsynced and renamed; only then is it added to the manifest (itself
replaced atomically). A shard is finished when the manifest lists it, from the same source, and its checksum
matches the file (`ShardManifest`, the one resume mechanism of every stage).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.contracts.fileio import atomic_write_bytes, check_file

MANIFEST = "_manifest.json"  # leading underscore: pyarrow and pandas skip it when reading the folder


def write_table(table: pa.Table, path: Path) -> str:
    """Write a Parquet file atomically; returns its sha256.

    An empty table is written with no row group at all: pyarrow would write one of zero rows, which Hugging Face
    `datasets` takes as a batch size of 0 and refuses the whole split."""
    buf = io.BytesIO()
    if table.num_rows:
        pq.write_table(table, buf, compression="zstd")
    else:
        pq.ParquetWriter(buf, table.schema, compression="zstd").close()
    return atomic_write_bytes(path, buf.getvalue())["sha256"]


def read_manifest(folder: Path) -> dict | None:
    path = folder / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: manifest is unreadable ({exc}); remove it or the folder to start over") from exc


def write_manifest(folder: Path, manifest: dict) -> None:
    atomic_write_bytes(folder / MANIFEST, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())


class NotReady(ValueError):
    """A stage's input is missing or unfinished (the stage before it has not run to the end)."""

    what = "shards"


class PlansNotReady(NotReady):
    """A split's plans are missing or unfinished."""

    what = "plans"


class RecordsNotReady(NotReady):
    """A split's records (drafted or curated) are missing or unfinished."""

    what = "records"


def require_complete(folder: Path, error: type[NotReady], hint: str) -> dict:
    """The manifest of a finished folder, else `error` naming the folder and what to run (`hint`)."""
    m = read_manifest(Path(folder))
    if not m or not m.get("complete"):
        raise error(f"{folder}: no finished {error.what}; {hint}")
    return m


def require_intact(folder: Path, manifest: dict, name: str, error: type[NotReady], hint: str) -> Path:
    """Shard `name` of a finished folder, checked against its manifest entry before it is read: a shard deleted or
    changed since it was written is named with what to run (`hint`), never read as if it were the recorded one."""
    path = Path(folder) / name
    why = check_file(path, manifest["shards"][name])
    if why:
        raise error(f"{path}: {why}; {hint}")
    return path


class ManifestMismatch(ValueError):
    """A folder holds shards of another run (config, input, model or schema); refuse to mix them."""


class ShardManifest:
    """The one resume mechanism: a folder of shards and its manifest.

    The manifest has a header (`kind`, the run's identity and anything a stage wants to keep) and `shards`,
    {name: entry}; every entry holds the shard's `sha256` and what it was made from (`source`). A shard is
    finished when its entry says it came from the same source and the file is exactly what was recorded, so a
    rerun skips it; the manifest is replaced atomically after each shard, so a killed run keeps what it
    finished. `complete` is set when the stage has recorded every shard it meant to write.
    """

    def __init__(self, folder: Path, data: dict, shards: dict | None = None):
        """`shards`: the entries dict when it is not `data["shards"]` (the dataset keeps one per split)."""
        self.folder, self.data = Path(folder), data
        self._shards = shards

    @classmethod
    def open(cls, folder: Path, kind: str, identity: dict, *, on_mismatch: str = "raise",
             remove: str | list[str] | None = None,
             hint: str = "choose another output folder or pass --overwrite", **header) -> "ShardManifest":
        """The manifest of `folder` for a run of this `identity` (a dict compared as a whole).

        A manifest of another identity raises ManifestMismatch (`on_mismatch="raise"`) or is started afresh
        (`"restart"`), the files matching the glob(s) `remove` (relative to `folder`; `"../patches/*.png"` names
        what the stage wrote beside it) deleted first, before the new manifest exists. The manifest is marked
        unfinished until `complete`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        data = read_manifest(folder)
        if data is not None and "identity" not in data and all(data.get(k) == v for k, v in identity.items()):
            data["identity"] = identity  # written before the identity had its own key: the same run
        if data is not None and (data.get("kind") != kind or data.get("identity") != identity):
            if on_mismatch == "raise":
                raise ManifestMismatch(f"{folder} holds {kind} shards of another run ({_differs(data.get('identity'), identity)}); {hint}")
            for pattern in [remove] if isinstance(remove, str) else remove or []:
                for old in folder.glob(pattern):
                    old.unlink(missing_ok=True)
            data = None
        data = data or {"kind": kind, "identity": identity, "shards": {}}
        data.update(header)
        data["complete"] = False
        m = cls(folder, data)
        m.save()
        return m

    @property
    def shards(self) -> dict:
        return self.data["shards"] if self._shards is None else self._shards

    def finished(self, name: str, source=None) -> bool:
        """Recorded from this `source` (when given) and the file on disk is exactly what was recorded."""
        entry = self.shards.get(name)
        if not entry or (source is not None and entry.get("source") != source):
            return False
        return check_file(self.folder / name, entry) is None

    def record(self, name: str, entry: dict) -> None:
        """Add a written shard (its entry holds `sha256`); the manifest is replaced atomically."""
        if "sha256" not in entry:
            raise ValueError(f"{self.folder / name}: a manifest entry needs the shard's sha256")
        self.shards[name] = entry
        self.save()

    def drop(self, keep: set[str]) -> list[str]:
        """Forget and delete the shards not in `keep` (their inputs are gone); returns their names."""
        gone = sorted(set(self.shards) - set(keep))
        for name in gone:
            (self.folder / name).unlink(missing_ok=True)
            del self.shards[name]
        return gone

    def complete(self, names: list[str] | None = None, **extra) -> None:
        """Mark the folder finished; every name in `names` must have been recorded."""
        missing = [n for n in (names or []) if n not in self.shards]
        if missing:
            raise RuntimeError(f"{self.folder}: shards never written: {', '.join(missing[:5])}")
        self.data.update(extra, complete=True, rows=sum(e.get("rows", 0) for e in self.shards.values()))
        self.save()

    def save(self) -> None:
        write_manifest(self.folder, self.data)


def _differs(old: dict | None, new: dict) -> str:
    if not isinstance(old, dict):
        return "no identity recorded"
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return "; ".join(f"{k}: {old.get(k)!r} there, {new.get(k)!r} here" for k in keys[:3]) or "another kind"
