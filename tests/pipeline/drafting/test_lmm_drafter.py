"""LMM drafting against the real vLLM server: grounding, drops, provenance, both instance modes, the cache."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pyarrow.dataset as ds
import pytest

from pipeline.drafting.stage import run_draft
from pipeline.drafting.lmm_client import Endpoint, LMMUnavailable
from pipeline.drafting.lmm_drafter import LMMSettings
from pipeline.planning.stage import run_plan
from pipeline.synthetic.tiny_build import plan_config
from pipeline.synthetic.vllm_server import free_port

pytestmark = [pytest.mark.server, pytest.mark.slow]


@pytest.fixture
def planned(tiny_root, tmp_path):
    out = tmp_path / "out"
    run_plan(plan_config(tiny_root, out, filters={"max_objects": 20}), progress=False)  # a couple of patches
    return out


def _records(out):
    return ds.dataset(out / "val/records", format="parquet").to_table().to_pylist()


def _plans(out):
    return {r["patch_id"]: r for r in ds.dataset(out / "val/plans", format="parquet").to_table().to_pylist()}


@pytest.mark.parametrize("mode", ["per-object", "per-patch"])
def test_lmm_records_are_grounded_or_refused(vllm_server, planned, mode):
    ep = Endpoint(vllm_server.url, vllm_server.model, vllm_server.api_key_env)
    summary = run_draft(planned, "val", progress=False, lmm=LMMSettings([ep], instance_mode=mode, max_in_flight=4))
    assert summary.stats["requests_sent"] > 0
    plans = _plans(planned)
    recs = _records(planned)
    cached = {k for (k,) in sqlite3.connect(planned / "val/lmm_cache.sqlite").execute("SELECT key FROM replies")}
    assert {r["patch_id"] for r in recs} == set(plans)
    merge_retried = 0
    for r in recs:
        plan = plans[r["patch_id"]]
        planned_tags = {o["tag"] for o in plan["objects"] if o["tier"] == "instance"} | {g["tag"] for g in plan["groups"]}
        assert r["provenance"]["drafter"] == "lmm" and r["provenance"]["model"] == "tiny"
        assert all(r[k] == plan[k] for k in ("source_image", "window", "crs", "transform"))  # the plan's georeference
        assert len(r["provenance"]["prompt_hashes"]) == 5
        assert json.loads(r["provenance"]["sampling"])["instance_mode"] == mode
        _check_prompts(r, plan, mode, cached)
        merge_retried += sum(p["tier"] == "merge" for p in r["provenance"]["prompts"]) > 1
        for f in r["failures"]:
            assert f["reason"] and f["tier"] in ("holistic", "instance", "group", "merge")
        if r["status"] != "ok":
            assert r["description"] is None and r["error"]
            continue
        tags = [p["tag"] for p in r["phrases"]]
        dropped = {d["tag"] for d in r["dropped"]}
        assert set(tags) | dropped == planned_tags and not set(tags) & dropped and len(tags) == len(set(tags))
        assert [r["description"][p["start"] : p["end"]] for p in r["phrases"]] == tags
        assert r["description"].count("[SEG]") == len(tags)
        for p in r["phrases"]:
            src = next((o for o in plan["objects"] if o["tag"] == p["tag"]), None) or next(
                g for g in plan["groups"] if g["tag"] == p["tag"])
            assert p["rle"]["counts"] == src["rle"]["counts"]
            assert p["tier"] == ("group" if "member_ids" in src else "instance")
    assert merge_retried > 0  # a random model's merges rarely ground: retried, each a new request (checked above)


def _check_prompts(r: dict, plan: dict, mode: str, cached: set[str]) -> None:
    """Every request the record came from is in its provenance, rendered, with the hash the cache keeps."""
    prompts = r["provenance"]["prompts"]
    instances = sorted((o for o in plan["objects"] if o["tier"] == "instance"), key=lambda o: o["mark"])
    inst = [p for p in prompts if p["tier"] == "instance"]
    assert prompts[0]["tier"] == "holistic" and prompts[0]["text"] == "Describe the image in four short sentences."
    if mode == "per-object":
        assert [p["tag"] for p in inst] == [o["tag"] for o in instances]
        for p, o in zip(inst, instances):
            assert f"marked with number {o['mark']}" in p["text"] and o["category"] in p["text"]
    else:
        assert len(inst) == (1 if instances else 0)
        assert all(f"{o['mark']}: the {o['category']}" in inst[0]["text"] for o in instances)
    assert [p["tag"] for p in prompts if p["tier"] == "group"] == [g["tag"] for g in plan["groups"]]
    merges = [p for p in prompts if p["tier"] == "merge"]
    assert all(p["tier"] == "merge" for p in prompts[len(prompts) - len(merges):])  # the merge comes last
    if r["status"] == "ok" and r["phrases"]:
        assert merges and all(f"<p> {ph['tag']} </p>" in merges[0]["text"] for ph in r["phrases"])
    assert len({p["request_sha256"] for p in merges}) == len(merges)  # a retried merge is a new request
    assert {p["request_sha256"] for p in prompts} <= cached and all(len(p["request_sha256"]) == 64 for p in prompts)


def test_rerun_sends_no_request_that_already_succeeded(vllm_server, planned):
    ep = Endpoint(vllm_server.url, vllm_server.model, vllm_server.api_key_env)
    first = run_draft(planned, "val", progress=False, lmm=LMMSettings([ep], max_in_flight=4))
    before = _records(planned)
    shutil.rmtree(planned / "val/records")  # the records are gone; the reply cache is not
    again = run_draft(planned, "val", progress=False, lmm=LMMSettings([ep], max_in_flight=4))
    assert first.stats["requests_sent"] > 0 and again.stats["requests_sent"] == 0
    assert again.stats["cache_hits"] >= first.stats["requests_sent"]
    assert _records(planned) == before


def test_unreachable_server_is_named_and_plans_stay(planned):
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(LMMUnavailable, match=dead):
        run_draft(planned, "val", progress=False, lmm=LMMSettings([Endpoint(dead, "tiny")], timeout=5))
    assert list((planned / "val/plans").glob("plans-*.parquet"))


def test_server_restart_mid_run_resumes_without_repeating_answered_requests(vllm_server, tiny_root, tmp_path):
    import sqlite3
    import threading
    import time

    out = tmp_path / "out"
    run_plan(plan_config(tiny_root, out), progress=False)
    ep = Endpoint(vllm_server.url, vllm_server.model, vllm_server.api_key_env)
    settings = LMMSettings([ep], max_in_flight=2, timeout=10)
    errors = []

    def draft():
        try:
            run_draft(out, "val", progress=False, lmm=settings)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            errors.append(exc)

    cache = out / "val/lmm_cache.sqlite"
    thread = threading.Thread(target=draft)
    thread.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if cache.exists() and sqlite3.connect(cache).execute("SELECT COUNT(*) FROM replies").fetchone()[0] >= 5:
            break
        time.sleep(0.2)
    vllm_server.stop()  # the server goes away in the middle of the run
    thread.join(120)
    try:
        assert errors and isinstance(errors[0], LMMUnavailable) and vllm_server.url in str(errors[0])
        answered = sqlite3.connect(cache).execute("SELECT COUNT(*) FROM replies").fetchone()[0]
    finally:
        vllm_server.start()  # and comes back
    resumed = run_draft(out, "val", progress=False, lmm=settings)
    assert resumed.stats["cache_hits"] >= answered >= 5
    assert resumed.stats["records"] == len(_plans(out)) and resumed.stats["prompt_tokens"] > 0
    fresh = run_draft(out, "val", progress=False, lmm=settings)  # everything finished: nothing is sent again
    assert fresh.stats["requests_sent"] == 0 and fresh.stats["skipped"] == fresh.stats["shards"]


def test_each_tier_goes_to_its_own_endpoint(vllm_server, planned):
    from pipeline.drafting.lmm_drafter import Drafting

    port = vllm_server.url.rsplit(":", 1)[1]
    main = Endpoint(vllm_server.url, "tiny", vllm_server.api_key_env)
    merge = Endpoint(f"http://localhost:{port}", "tiny", vllm_server.api_key_env)
    settings = LMMSettings([main], tier_endpoints={"merge": [merge]}, max_in_flight=4)
    seen = {}
    real_init = Drafting.__post_init__

    def spy(self):
        real_init(self)
        seen["drafting"] = self

    Drafting.__post_init__ = spy
    try:
        summary = run_draft(planned, "val", progress=False, lmm=settings)
    finally:
        Drafting.__post_init__ = real_init
    clients = seen["drafting"].clients
    assert clients["holistic"] is clients["instance"] is clients["group"] is not clients["merge"]
    merged = sum(clients["merge"].state.sent.values())
    assert merged > 0 and clients["merge"].state.sent == {merge.url: merged}
    assert summary.stats["requests_sent"] == merged + sum(clients["holistic"].state.sent.values())
    with pytest.raises(ValueError, match="unknown tier"):
        Drafting(LMMSettings([main], tier_endpoints={"captions": [main]}), cache=None)
