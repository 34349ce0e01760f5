"""The served deployment, end to end: `prefect deployment run build-geopixeld/<name>` against a real server, the
final state read through the API, the Parquet read back; a build killed with SIGKILL resumes to the same dataset."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from flows import serve
from flows.without_prefect import build_without_prefect
from pipeline.release.dataset import verify
from pipeline.contracts.fileio import sha256_file
from pipeline.contracts.shards import read_manifest
from tests.flows.test_build import fingerprint, params

pytestmark = [pytest.mark.server, pytest.mark.slow]
PREFECT = str(Path(sys.executable).parent / "prefect")


@pytest.fixture(scope="module")
def served(prefect_server):
    proc = serve.start_serving("test", None, prefect_server.api, prefect_server.state)
    yield proc
    serve.stop_pid(proc.pid)


def deployment_run(srv, p: dict, watch: bool = True, timeout: int = 400, name: str = "test"):
    cmd = [PREFECT, "deployment", "run", f"build-geopixeld/{name}", "-p", f"params={json.dumps(p)}"]
    if watch:
        cmd += ["--watch", "--watch-timeout", str(timeout)]
    return subprocess.run(cmd, env=srv.env(), capture_output=True, text=True, timeout=timeout + 60)


def api(srv, path: str, body: dict | None = None):
    req = urllib.request.Request(f"{srv.api}{path}", data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def run_of(srv, res) -> dict:
    """The flow run a `prefect deployment run` call created (its id is printed as `UUID: ...`)."""
    run_id = re.search(r"UUID: ([0-9a-f-]{36})", res.stdout)[1]
    return api(srv, f"/flow_runs/{run_id}")


def test_deployment_run_builds_the_dataset(prefect_server, served, tiny_root, tmp_path):
    p = json.loads(params(tiny_root, tmp_path / "out").model_dump_json())
    res = deployment_run(prefect_server, p)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    run = run_of(prefect_server, res)
    assert run["state"]["type"] == "COMPLETED" and run["parameters"]["params"]["output"]["out"] == str(tmp_path / "out")
    df = pd.read_parquet(tmp_path / "out/dataset/data/test")  # the default splits: train and test (from val/)
    recs = pd.read_parquet(tmp_path / "out/test/records")
    assert len(df) == (recs["status"] == "ok").sum() > 0 and verify(tmp_path / "out/dataset") == []


def test_bad_parameters_are_refused_before_any_work_naming_the_field(prefect_server, served, tmp_path):
    # what the parameter schema says (bounds, types, unknown keys) is refused before a run is even created
    res = deployment_run(prefect_server, {"output": {"out": str(tmp_path / "out")}, "tiling": {"patch_size": 4}},
                         timeout=120)
    assert res.returncode != 0 and "params.tiling.patch_size" in res.stdout and "UUID:" not in res.stdout, res.stdout
    res = deployment_run(prefect_server, {"no_such_setting": 1}, timeout=120)
    assert res.returncode != 0 and "UUID:" not in res.stdout
    # what only the model's validators know fails the run at its start, before any stage
    res = deployment_run(prefect_server, {"output": {"out": str(tmp_path / "out")}, "splits": ["val", "val"]},
                         timeout=120)
    assert res.returncode != 0
    run = run_of(prefect_server, res)
    assert run["state"]["type"] == "FAILED" and "splits" in run["state"]["message"], run["state"]
    assert not (tmp_path / "out").exists()


def _wait(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


COMMON = {"splits": ["val"], "workers": 1, "batch_shards": 1}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The small demo set (12 images in val, one shard each) and the dataset an uninterrupted build makes of it."""
    from pipeline.synthetic.isaid import generate

    root = tmp_path_factory.mktemp("small")
    generate(root, scale="small", seed=3, splits=("val",), progress=False)
    expected = fingerprint(build_without_prefect(params(root, tmp_path_factory.mktemp("direct") / "out", **COMMON)).folder)
    return root, expected


def _killed_mid_plan(out: Path, kill) -> dict:
    """Wait for three planned shards, kill, check what is on disk is whole; returns the finished shards' mtimes.

    On a fast machine the planning stage may end between two polls; the build is then killed in a later stage,
    which is just as much a mid-build kill (the dataset's manifest is not complete yet)."""
    plans_dir = out / "val/plans"
    _wait(lambda: len((read_manifest(plans_dir) or {}).get("shards", {})) >= 3, 300, "three planned shards")
    kill()
    assert not (read_manifest(out / "dataset") or {}).get("complete"), "the build ended before it was killed"
    m = read_manifest(plans_dir)
    assert all(sha256_file(plans_dir / n) == e["sha256"] for n, e in m["shards"].items())
    pd.read_parquet(plans_dir)  # what a reader sees is never half-written (temporary files are hidden)
    return {n: (plans_dir / n).stat().st_mtime_ns for n in m["shards"]}


def test_a_build_killed_with_sigkill_resumes_to_the_same_dataset(prefect_server, small, tmp_path):
    root, expected = small
    out = tmp_path / "out"
    p = json.loads(params(root, out, **COMMON).model_dump_json())
    worker = serve.start_serving("resume", None, prefect_server.api, prefect_server.state)
    assert deployment_run(prefect_server, p, watch=False, name="resume").returncode == 0  # the runner picks it up

    def kill():  # the runner, the flow-run process and its pool workers, mid-stage
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)

    done = _killed_mid_plan(out, kill)
    restarted = serve.start_serving("resume", None, prefect_server.api, prefect_server.state)
    try:
        res = deployment_run(prefect_server, p, name="resume")
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    finally:
        serve.stop_pid(restarted.pid)
    assert fingerprint(out / "dataset") == expected
    plans_dir = out / "val/plans"
    assert {n: (plans_dir / n).stat().st_mtime_ns for n in done} == done  # finished shards were not redone


def test_a_build_whose_server_is_killed_resumes_to_the_same_dataset(small, tmp_path):
    from tests.flows.conftest import PrefectServer

    root, expected = small
    out = tmp_path / "out"
    p = json.loads(params(root, out, **COMMON).model_dump_json())
    srv = PrefectServer(tmp_path / "prefect").start()
    worker = None
    try:
        worker = serve.start_serving("server-kill", None, srv.api, srv.state)
        assert deployment_run(srv, p, watch=False, name="server-kill").returncode == 0

        def kill():
            os.killpg(srv.proc.pid, signal.SIGKILL)
            srv.proc.wait(timeout=30)

        done = _killed_mid_plan(out, kill)
        srv.start()  # the same port and database; the runner reconnects
        res = deployment_run(srv, p, name="server-kill")  # waits for the orphaned run's lock, if it still runs
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        assert fingerprint(out / "dataset") == expected
        plans_dir = out / "val/plans"
        assert {n: (plans_dir / n).stat().st_mtime_ns for n in done} == done
    finally:
        if worker is not None:
            serve.stop_pid(worker.pid)
        srv.stop()
