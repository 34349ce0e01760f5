"""The ledger is checked whole: insane decision times are refused before anything is written, and a damaged
shard or manifest stops every `curate` command with one line naming the file and `curate repair`, which fixes it."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.contracts.shards import read_manifest, write_manifest, write_table
from pipeline.curation import DecisionFileError, ExportFilter, SheetSettings, export_sheets, import_decisions
from pipeline.curation.decisions import time_problem
from pipeline.curation.ledger import LEDGER_SCHEMA, LedgerError, read, repair
from tests.pipeline.curation.curation_helpers import decision_file, export_manifest, records

runner = CliRunner()
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)


def _snapshot(*folders: Path) -> dict:
    return {str(p): p.read_bytes() for f in folders for p in sorted(Path(f).rglob("*")) if p.is_file()}


@pytest.mark.parametrize("t, ok", [
    (NOW + timedelta(hours=23), True), (NOW + timedelta(hours=25), False),
    (datetime(2020, 1, 1, tzinfo=timezone.utc), True), (datetime(2019, 12, 31, 23, 59, tzinfo=timezone.utc), False),
    (datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-14))), False),  # year 10000 in UTC
    (datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))), False),  # year 0 in UTC
])
def test_time_problem_bounds(t, ok):
    assert (time_problem(t, NOW) is None) is ok


@pytest.fixture
def sheet(drafted, tmp_path):
    """(export folder, its first two patch ids, one phrase tag of the first)."""
    res = export_sheets(drafted, "val", ExportFilter(), SheetSettings(per_sheet=5))
    a, b = export_manifest(res.folder)["sheets"][0]["patches"][:2]
    return res.folder, a, b, records(drafted)[a]["phrases"][0]["tag"]


def _decisions(sheet, path: Path, curator: str = "ann", patch_at: str | None = None, phrase_at: str | None = None,
               saved_at: str | None = None) -> Path:
    folder, a, _, tag = sheet
    decision_file(folder, path, curator, {a: {"decision": "accept", "phrases": [(tag, "accept", None, 2)]}})
    body = json.loads(path.read_text())
    p = body["patches"][0]
    p["at"] = patch_at or p["at"]
    p["phrases"][0]["at"] = phrase_at or p["phrases"][0]["at"]
    body["saved_at"] = saved_at or body["saved_at"]
    path.write_text(json.dumps(body))
    return path


BAD_TIMES = {  # before the range check, the first two were written and then every curate command hit OverflowError
    "year 9999 at -14:00": ({"phrase_at": "9999-12-31T23:59:59-14:00"}, "phrase", "is more than 1 day after"),
    "year 1 at +14:00": ({"phrase_at": "0001-01-01T00:00:00+14:00"}, "phrase", "is before 2020-01-01"),
    "far future wins latest forever": ({"patch_at": "2100-01-01T00:00:00Z"}, "patch", "is more than 1 day after"),
    "saved before 2020": ({"saved_at": "2019-06-01T00:00:00Z"}, "file", "is before 2020-01-01"),
    "no time zone": ({"phrase_at": "2026-11-27T09:00:00"}, "phrase", "timezone"),
}


@pytest.mark.parametrize("case", sorted(BAD_TIMES))
def test_insane_times_are_refused_naming_the_decision_and_nothing_is_written(drafted, sheet, tmp_path, case):
    times, level, message = BAD_TIMES[case]
    path = _decisions(sheet, tmp_path / "bad.json", **times)
    _, a, _, tag = sheet
    with pytest.raises(DecisionFileError, match=re.escape(message)) as err:
        import_decisions(drafted, [path])
    text = str(err.value)
    assert text.startswith(f"{path}: ") and "\n" not in text
    if level == "file":
        assert "field saved_at" in text and "patch" not in text
    else:
        assert f"patch {a!r}" in text and "field at" in text and (f"phrase {tag!r}" in text) is (level == "phrase")
    assert not (drafted / "val/curation/ledger").exists() and not (drafted / "val/curated").exists()
    res = runner.invoke(app, ["curate", "import", str(drafted), str(path)])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1 and "nothing was imported" in res.output


def test_a_browser_clock_a_few_hours_ahead_is_accepted(drafted, sheet, tmp_path):
    ahead = (datetime.now(timezone.utc) + timedelta(hours=3)).isoformat()
    import_decisions(drafted, [_decisions(sheet, tmp_path / "d.json", phrase_at=ahead, saved_at=ahead)])
    rows, _ = read(drafted, "val")
    assert max(r["decided_at"] for r in rows) == datetime.fromisoformat(ahead)


def _ledger(out: Path) -> Path:
    return out / "val/curation/ledger"


def _shard(out: Path) -> Path:
    return next(_ledger(out).glob("decisions-*.parquet"))


def _rewrite_rows(out: Path, change) -> None:
    """Rewrite the shard's rows and its manifest checksum, as a writer without the checks would have."""
    path = _shard(out)
    rows = pq.read_table(path).to_pylist()
    for r in rows:
        change(r)
    m = read_manifest(_ledger(out))
    m["shards"][path.name]["sha256"] = write_table(pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA), path)
    write_manifest(_ledger(out), m)


def _truncate_keeping_checksum(out: Path) -> None:
    path = _shard(out)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    m = read_manifest(_ledger(out))
    m["shards"][path.name]["sha256"] = __import__("hashlib").sha256(path.read_bytes()).hexdigest()
    write_manifest(_ledger(out), m)


def _unlist(out: Path) -> None:
    m = read_manifest(_ledger(out))
    m["shards"].clear()
    write_manifest(_ledger(out), m)


DAMAGE = {
    "decided in year 10000 UTC (the old crash)": (lambda out: _rewrite_rows(out, lambda r: r.update(
        decided_at=datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-14))))), "decided_at is not between"),
    "decided in 2100": (lambda out: _rewrite_rows(out, lambda r: r.update(
        decided_at=datetime(2100, 1, 1, tzinfo=timezone.utc))), "decided_at is not between"),
    "truncated Parquet": (_truncate_keeping_checksum, "not a readable Parquet file"),
    "garbage, checksum not the manifest's": (lambda out: _shard(out).write_bytes(b"garbage"), "differs from its checksum"),
    "shard missing": (lambda out: _shard(out).unlink(), "is missing"),
    "shard not in the manifest": (_unlist, "is not listed in"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_a_damaged_shard_stops_every_command_with_one_line_and_repair_fixes_it(drafted, sheet, tmp_path, case):
    damage, message = DAMAGE[case]
    first = import_decisions(drafted, [_decisions(sheet, tmp_path / "ann.json")])
    assert first.curated["val"].summary.decided == 1
    shard = _shard(drafted)
    damage(drafted)
    damaged = shard.read_bytes() if shard.exists() else None
    folder, _, b, _ = sheet
    good = decision_file(folder, tmp_path / "bob.json", "bob", {b: {"decision": "reject"}})
    before = _snapshot(drafted / "val/curation", drafted / "val/curated")
    for args in (["status", str(drafted), "--split", "val"], ["export", str(drafted), "--split", "val"],
                 ["import", str(drafted), str(good)]):
        res = runner.invoke(app, ["curate", *args])
        assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
        assert str(shard) in res.output and message in res.output and f"geopixeld curate repair {drafted}" in res.output
    assert _snapshot(drafted / "val/curation", drafted / "val/curated") == before  # the refused import wrote nothing

    res = runner.invoke(app, ["curate", "repair", str(drafted), "--split", "val"])
    assert res.exit_code == 0, res.output
    kept_unlisted = case == "shard not in the manifest"  # an intact shard the manifest lost is listed again
    assert ("ann.json" in res.output) is not kept_unlisted
    if damaged is not None and not kept_unlisted:  # moved aside, byte for byte
        assert [p.read_bytes() for p in (_ledger(drafted) / "damaged").glob(f"{shard.name}.*")] == [damaged]
    res = runner.invoke(app, ["curate", "import", str(drafted), str(good)] + ([] if kept_unlisted else [str(tmp_path / "ann.json")]))
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["curate", "status", str(drafted), "--split", "val"])
    assert res.exit_code == 0 and "2 of 14 decided" in res.output, res.output
    assert runner.invoke(app, ["curate", "repair", str(drafted), "--split", "val"]).output.strip().endswith("nothing to repair")


def test_a_truncated_manifest_is_rebuilt_from_the_shards_losing_no_decision(drafted, sheet, tmp_path):
    f = _decisions(sheet, tmp_path / "ann.json")
    import_decisions(drafted, [f])
    manifest = _ledger(drafted) / "_manifest.json"
    intact = json.loads(manifest.read_text())
    manifest.write_text(manifest.read_text()[:40])
    with pytest.raises(LedgerError, match=re.escape(f"{manifest}: ledger manifest is unreadable")):
        read(drafted, "val")
    res = runner.invoke(app, ["curate", "status", str(drafted), "--split", "val"])
    assert res.exit_code == 2 and str(manifest) in res.output and "curate repair" in res.output
    r = repair(drafted, "val")
    assert r.kept == [_shard(drafted).name] and r.reimport == [] and r.manifest_written
    rebuilt = read_manifest(_ledger(drafted))
    assert rebuilt["shards"].keys() == intact["shards"].keys() and rebuilt["rows"] == intact["rows"] == 2
    entry = rebuilt["shards"][_shard(drafted).name]
    assert {k: entry[k] for k in ("sha256", "decision_file_sha256", "curator")} == {
        k: intact["shards"][_shard(drafted).name][k] for k in ("sha256", "decision_file_sha256", "curator")}
    assert [s for _, s in import_decisions(drafted, [f]).files] == ["already imported"]


def test_a_manifest_naming_a_shard_outside_the_ledger_is_refused(drafted, sheet, tmp_path):
    import_decisions(drafted, [_decisions(sheet, tmp_path / "ann.json")])
    m = read_manifest(_ledger(drafted))
    m["shards"]["../../records/_manifest.json"] = next(iter(m["shards"].values()))
    write_manifest(_ledger(drafted), m)
    with pytest.raises(LedgerError, match="not a valid ledger manifest"):
        read(drafted, "val")


def test_curated_not_written_after_the_ledger_says_so_and_importing_again_retries(drafted, sheet, tmp_path, monkeypatch):
    import pipeline.curation.importer as importer

    real = importer.rebuild
    monkeypatch.setattr(importer, "rebuild", lambda *a, **k: (_ for _ in ()).throw(ValueError("disk full")))
    f = _decisions(sheet, tmp_path / "ann.json")
    res = runner.invoke(app, ["curate", "import", str(drafted), str(f)])
    assert res.exit_code == 2 and "disk full" in res.output and "recorded in the ledger" in res.output
    assert "nothing was imported" not in res.output and not (drafted / "val/curated").exists()
    monkeypatch.setattr(importer, "rebuild", real)
    again = import_decisions(drafted, [f])
    assert [s for _, s in again.files] == ["already imported"] and again.curated["val"].summary.decided == 1
