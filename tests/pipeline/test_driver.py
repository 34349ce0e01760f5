"""The build's plain stage functions: validation of written records, the output lock, the write probe."""

from __future__ import annotations

import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import driver as stages
from pipeline.drafting.stage import run_draft
from pipeline.planning.stage import run_plan
from pipeline.contracts.shards import read_manifest, write_manifest, write_table
from tests.conftest import make_config


@pytest.fixture
def drafted(tiny_root, tmp_path):
    out = tmp_path / "out"
    run_plan(make_config(tiny_root, out), progress=False)
    run_draft(out, "val", progress=False)
    return out


def _change_first_record(out, change):
    d = out / "val/records"
    m = read_manifest(d)
    name = sorted(m["shards"])[0]
    t = pq.read_table(d / name)
    rows = t.to_pylist()
    change(rows[0])
    m["shards"][name]["sha256"] = write_table(pa.Table.from_pylist(rows, schema=t.schema), d / name)
    write_manifest(d, m)
    return rows[0]["patch_id"]


def test_validate_counts_what_it_checked(drafted):
    c = stages.validate_records(drafted, "val")
    assert c["records"] == c["ok"] > 0 and c["phrases"] > c["ok"]


@pytest.mark.parametrize("change, message", [
    (lambda r: r["phrases"][0].update(start=r["phrases"][0]["start"] + 1), "does not hold tag"),
    (lambda r: r.update(phrases=r["phrases"][1:]), "grounded phrases"),
    (lambda r: r["phrases"][0]["rle"].update(size=[10, 10]), "not the patch size"),
    (lambda r: r.update(description=r["description"] + " <p> stray"), "markup left"),
])
def test_validate_names_the_shard_and_patch_of_a_broken_record(drafted, change, message):
    pid = _change_first_record(drafted, change)
    with pytest.raises(ValueError, match=message) as err:
        stages.validate_records(drafted, "val")
    assert pid in str(err.value) and "records-00000.parquet" in str(err.value)


def test_a_second_build_of_the_same_output_waits_for_the_first(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, '.'); from pipeline.driver import output_lock\n"
        f"with output_lock({str(tmp_path)!r}):\n    print('held', flush=True); time.sleep(2)")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    told = []
    t0 = time.monotonic()
    with stages.output_lock(tmp_path, log=told.append, poll=0.1):
        waited = time.monotonic() - t0
    holder.wait(10)
    assert told and "waiting" in told[0] and waited > 0.5


def test_the_write_probe_names_a_folder_it_cannot_create(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(stages.OutputNotWritable, match=str(blocker / "out")):
        stages.check_writable(blocker / "out")
