"""The `drop` verification policy in the LMM drafter, against the real vLLM server: a tier text that fails the
screen is asked once more with new seeds, kept when the new text passes, else dropped naming the checks.

The screen here is scripted (what it fails does not depend on what a random tiny model happens to write, which
differs between CPUs); the verification's own screen is checked on what it keeps."""

from __future__ import annotations

import pyarrow.dataset as ds
import pytest

from pipeline.contracts.plan_schema import row_to_plan
from pipeline.drafting.lmm_client import Endpoint
from pipeline.drafting.lmm_drafter import LMMSettings
from pipeline.drafting.stage import run_draft
from pipeline.planning.stage import run_plan
from pipeline.synthetic.tiny_build import plan_config
from pipeline.verification.stage import VerificationConfig, drafting_screen, screen_text

pytestmark = [pytest.mark.server, pytest.mark.slow]


def _draft(vllm_server, out, screen, screen_id):
    ep = Endpoint(vllm_server.url, vllm_server.model, vllm_server.api_key_env)
    run_draft(out, "val", progress=False, lmm=LMMSettings([ep], max_in_flight=4, screen=screen, screen_id=screen_id))
    plans = {p.patch_id: p for p in (row_to_plan(r) for r in
                                     ds.dataset(out / "val/plans", format="parquet").to_table().to_pylist())}
    return plans, ds.dataset(out / "val/records", format="parquet").to_table().to_pylist()


def _asked(record) -> dict[tuple[str, str], list[str]]:
    asked: dict[tuple[str, str], list[str]] = {}
    for p in record["provenance"]["prompts"]:
        asked.setdefault((p["tier"], p["tag"]), []).append(p["request_sha256"])
    return asked


def test_a_failing_text_is_asked_again_as_a_new_request_then_kept_or_dropped(vllm_server, tiny_root, tmp_path):
    out = tmp_path / "out"
    run_plan(plan_config(tiny_root, out, filters={"max_objects": 20}), progress=False)
    calls: dict[tuple[str, str, str], int] = {}
    first: dict[str, tuple[str, str]] = {}  # tier -> (patch, tag) the script picked

    def screen(plan, tier, tag, text):  # fails the first text it sees of each tier: the group one every time
        key = (plan.patch_id, tier, tag)
        calls[key] = calls.get(key, 0) + 1
        mine = first.setdefault(tier, (plan.patch_id, tag))
        if mine == (plan.patch_id, tag) and (tier == "group" or calls[key] == 1):
            return ["scripted"]
        return []

    plans, recs = _draft(vllm_server, out, screen, "scripted")
    by_id = {r["patch_id"]: r for r in recs}
    assert set(first) == {"instance", "group"}, first
    for tier, (pid, tag) in first.items():
        r = by_id[pid]
        requests = _asked(r)[(tier, tag)]
        assert len(requests) == 2 and len(set(requests)) == 2  # asked again, with other seeds: a new request
        kept = {t["tag"] for t in r["instance_texts" if tier == "instance" else "group_texts"]}
        reasons = {d["tag"]: d["reason"] for d in r["dropped"]}
        if tier == "group":  # fails again: dropped, naming the check, and out of the description
            assert tag not in kept and reasons[tag] in ("verification: scripted",
                                                        "verification: no valid sentence on the re-draft")
            assert f"<p> {tag} </p>" not in (r["description"] or "")
        else:  # passes the second time (or its second reply was invalid): kept, else dropped as verification's
            assert tag in kept or reasons[tag].startswith("verification: ")
    others = [k for k in calls if (k[0], k[2]) not in {v for v in first.values()}]
    assert others and all(calls[k] == 1 for k in others)  # a text that passes is asked once


def test_the_verifications_screen_keeps_only_texts_that_pass_it(vllm_server, tiny_root, tmp_path):
    out = tmp_path / "out"
    run_plan(plan_config(tiny_root, out, filters={"max_objects": 20}), progress=False)
    config = VerificationConfig(policy="drop")
    plans, recs = _draft(vllm_server, out, *drafting_screen(config))
    for r in recs:
        plan = plans[r["patch_id"]]
        for tier, key in (("instance", "instance_texts"), ("group", "group_texts")):
            for t in r[key]:
                assert screen_text(plan, tier, t["tag"], t["text"], config.settings) == []
        for d in r["dropped"]:
            if d["reason"].startswith("verification: "):
                tier = "instance" if any(o.tag == d["tag"] for o in plan.instances) else "group"
                assert len(_asked(r)[(tier, d["tag"])]) == 2
