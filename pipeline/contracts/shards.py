"""Parquet shards written atomically, and the manifest that makes a rerun skip finished shards.

A shard is written to a temporary file, fsynced and renamed; only then is it added to the manifest (itself
replaced atomically). A shard is finished when the manifest lists it and its checksum matches the file.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.contracts.imageio import atomic_write_bytes

MANIFEST = "_manifest.json"  # leading underscore: pyarrow and pandas skip it when reading the folder


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_table(table: pa.Table, path: Path) -> str:
    """Write a Parquet file atomically; returns its sha256."""
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    data = buf.getvalue()
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


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


def finished(folder: Path, manifest: dict | None, shard: str) -> bool:
    """True when the shard is in the manifest and the file on disk is exactly what was recorded."""
    if not manifest or shard not in manifest.get("shards", {}):
        return False
    path = folder / shard
    return path.is_file() and sha256_file(path) == manifest["shards"][shard]["sha256"]
