"""The decisions ledger: every imported decision, with who made it, when, and from which file (Parquet).

One shard per decision file, named by the file's sha256, so importing a file twice finds its shard and changes
nothing; shards are only ever added. The curated records are recomputed from the whole ledger.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.contracts.shards import read_manifest, sha256_file, write_manifest, write_table
from pipeline.contracts.layout import ledger_dir

_TS = pa.timestamp("us", tz="UTC")
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


def shard_name(file_sha256: str) -> str:
    return f"decisions-{file_sha256[:24]}.parquet"


def imported(out: Path, split: str, file_sha256: str) -> bool:
    m = read_manifest(ledger_dir(out, split))
    return bool(m and shard_name(file_sha256) in m.get("shards", {}))


def append(out: Path, split: str, file_sha256: str, rows: list[dict], info: dict) -> str:
    """Write one decision file's rows as a new ledger shard, then list it in the ledger manifest."""
    folder = ledger_dir(out, split)
    name = shard_name(file_sha256)
    sha = write_table(pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA), folder / name)
    m = read_manifest(folder) or {"kind": "geopixeld-curation-ledger", "schema_version": 1, "shards": {}}
    m["shards"][name] = {"sha256": sha, "rows": len(rows), "decision_file_sha256": file_sha256, **info}
    m["rows"] = sum(e["rows"] for e in m["shards"].values())
    write_manifest(folder, m)
    return name


def shards(out: Path, split: str) -> dict[str, str]:
    """{shard: sha256} as the ledger manifest lists them (empty before any import)."""
    m = read_manifest(ledger_dir(out, split))
    return {n: e["sha256"] for n, e in (m or {}).get("shards", {}).items()}


def read(out: Path, split: str) -> tuple[list[dict], dict]:
    """All ledger rows of a split and {shard: sha256}; a shard that differs from the manifest is an error."""
    folder = ledger_dir(out, split)
    m = read_manifest(folder)
    if not m:
        return [], {}
    rows = []
    for name, entry in sorted(m["shards"].items()):
        path = folder / name
        if not path.is_file() or sha256_file(path) != entry["sha256"]:
            raise ValueError(f"{path}: ledger shard is missing or differs from {folder}/_manifest.json; "
                             "restore it from a backup (the ledger is append-only)")
        rows.extend(pq.read_table(path).to_pylist())
    return rows, {n: e["sha256"] for n, e in m["shards"].items()}


def table(out: Path, split: str) -> pa.Table:
    """The whole ledger as one table (empty, with the schema, before any import)."""
    rows, _ = read(out, split)
    return pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA)
