"""The served deployment drafting with the real vLLM test server: killed with SIGKILL in the middle of drafting,
started again, it finishes without sending any request that had already succeeded."""

import json
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pandas as pd
import pytest

from flows import serve
from pipeline.release.dataset import verify
from pipeline.contracts.shards import read_manifest
from tests.flows.test_build import params
from tests.flows.test_deployment import _wait, api, deployment_run

pytestmark = [pytest.mark.server, pytest.mark.slow]


def cache_rows(path: Path) -> int:
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        return db.execute("select count(*) from replies").fetchone()[0]


def latest_stage_table(srv) -> list[dict]:
    art = api(srv, "/artifacts/filter", {"artifacts": {"key": {"any_": ["build-geopixeld-stages"]}},
                                         "sort": "CREATED_DESC", "limit": 1})[0]
    return json.loads(art["data"]) if isinstance(art["data"], str) else art["data"]


def test_lmm_build_killed_mid_draft_resumes_without_repeating_a_request(prefect_server, vllm_server, tiny_root,
                                                                         tmp_path):
    out = tmp_path / "out"
    lmm = {"endpoints": {"urls": [vllm_server.url], "model": vllm_server.model}, "api_key_env": vllm_server.api_key_env,
           "instance_mode": "per-object", "max_in_flight": 4, "timeout": 60}
    images = sorted(f.stem for f in (tiny_root / "val/images").glob("*.png") if "_" not in f.stem)
    p = json.loads(params(tiny_root, out, splits=["val"], workers=1, batch_shards=1, lmm=lmm).model_dump_json())
    p["source"]["skip_images"] = images[1:]  # one image (a few patches, tens of requests) keeps the test short
    worker = serve.start_serving("lmm", None, prefect_server.api, prefect_server.state)
    assert deployment_run(prefect_server, p, watch=False, name="lmm").returncode == 0
    cache = out / "val/lmm_cache.sqlite"
    rec_dir = out / "val/records"
    _wait(lambda: cache_rows(cache) >= 5, 600, "five LMM replies in the cache")
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=30)
    at_kill = cache_rows(cache)
    finished_before = set((read_manifest(rec_dir) or {}).get("shards", {}))

    restarted = serve.start_serving("lmm", None, prefect_server.api, prefect_server.state)
    try:
        res = deployment_run(prefect_server, p, name="lmm", timeout=900)
        assert res.returncode == 0, res.stdout[-3000:]
    finally:
        serve.stop_pid(restarted.pid)
    draft = next(r for r in latest_stage_table(prefect_server) if r["stage"] == "draft")
    assert int(draft["requests_sent"]) == cache_rows(cache) - at_kill  # every request sent was new
    assert int(draft["cache_hits"]) >= 1 or finished_before  # replies of the killed run were used
    recs = pd.read_parquet(rec_dir)
    assert len(recs) == read_manifest(out / "val/plans")["rows"]
    assert set(recs["provenance"].map(lambda p: p["drafter"])) == {"lmm"}
    ok = recs[recs["status"] == "ok"]
    failed = recs[recs["status"] != "ok"]
    assert failed["error"].map(bool).all()  # a record that did not ground says why
    df = pd.read_parquet(out / "dataset/data/val") if len(ok) else pd.DataFrame()
    assert len(df) == len(ok) and verify(out / "dataset") == []
    # the cost, reported before drafting: one request per marked object, holistic and group, one merge a patch
    est = api(prefect_server, "/artifacts/filter", {"artifacts": {"key": {"any_": ["draft-val-estimate"]}},
                                                    "sort": "CREATED_DESC", "limit": 1})[0]["data"]
    plans = read_manifest(out / "val/plans")["shards"].values()
    marks = sum(e["stats"]["instances"] for e in plans)
    assert f"  instance {marks:>10,}" in est and "annotator family qwen2.5-vl" in est
    assert recs["checks"].map(lambda c: c is not None).all()  # verified by default
