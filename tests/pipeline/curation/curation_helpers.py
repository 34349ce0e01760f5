"""Decision files as the sheet writes them, made in Python for the tests that do not drive a browser."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.contracts.gcg_schema import GCG_SCHEMA
from pipeline.contracts.shards import read_manifest, write_manifest, write_table

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def export_manifest(folder: Path) -> dict:
    return json.loads((Path(folder) / "export.json").read_text())


def decision_file(folder: Path, path: Path, curator: str, patches: dict, sheet: int = 0, saved: float = 60) -> Path:
    """Write a decision file for sheet `sheet` of the export in `folder`.

    patches: {patch_id: {"decision": ..., "note": ..., "at": minutes, "phrases": [(tag, decision, text|None, minutes)]}}
    """
    m = export_manifest(folder)
    s = m["sheets"][sheet]
    body = {"format": "geopixeld-curation-decisions", "version": 1, "export_id": m["export_id"], "sheet_id": s["sheet_id"],
            "sheet_file": s["file"], "split": m["split"], "curator": curator, "saved_at": at(saved), "generator": "test",
            "patches": []}
    for pid, d in patches.items():
        phrases = []
        for tag, decision, text, minutes in d.get("phrases", []):
            ph = {"tag": tag, "decision": decision, "at": at(minutes)}
            if text is not None:
                ph["text"] = text
            phrases.append(ph)
        body["patches"].append({"patch_id": pid, "content_sha256": m["patches"][pid]["content_sha256"],
                                "decision": d.get("decision"), "note": d.get("note", ""),
                                "at": at(d.get("at", 1)) if d.get("decision") else None, "phrases": phrases})
    path.write_text(json.dumps(body))
    return path


def records(out: Path, split: str = "val", folder: str = "records") -> dict[str, dict]:
    d = Path(out) / split / folder
    return {r["patch_id"]: r for n in sorted(read_manifest(d)["shards"]) for r in pq.read_table(d / n).to_pylist()}


def rewrite_records(out: Path, change, split: str = "val") -> None:
    """Change drafted records in place (`change(row)` edits a row), keeping the records manifest consistent."""
    d = Path(out) / split / "records"
    m = read_manifest(d)
    for name in sorted(m["shards"]):
        rows = pq.read_table(d / name).to_pylist()
        for r in rows:
            change(r)
        m["shards"][name]["sha256"] = write_table(pa.Table.from_pylist(rows, schema=GCG_SCHEMA), d / name)
    write_manifest(d, m)
