"""The `drop` verification policy in the LMM drafter, against the real vLLM server: a tier text that fails a check
is asked once more with new seeds, kept when the new text passes, else dropped naming the checks."""

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


def test_failing_texts_are_redrafted_once_then_dropped(vllm_server, tiny_root, tmp_path):
    out = tmp_path / "out"
    run_plan(plan_config(tiny_root, out, filters={"max_objects": 20}), progress=False)
    config = VerificationConfig(policy="drop")
    screen, screen_id = drafting_screen(config)
    ep = Endpoint(vllm_server.url, vllm_server.model, vllm_server.api_key_env)
    run_draft(out, "val", progress=False, lmm=LMMSettings([ep], max_in_flight=4, screen=screen, screen_id=screen_id))
    plans = {p.patch_id: p for p in (row_to_plan(r) for r in
                                     ds.dataset(out / "val/plans", format="parquet").to_table().to_pylist())}
    recs = ds.dataset(out / "val/records", format="parquet").to_table().to_pylist()
    redrafted = 0
    for r in recs:
        plan = plans[r["patch_id"]]
        asked = {}
        for p in r["provenance"]["prompts"]:
            asked.setdefault((p["tier"], p["tag"]), []).append(p["request_sha256"])
        for tier, key in (("instance", "instance_texts"), ("group", "group_texts")):
            for t in r[key]:  # every text kept passes the screen
                assert screen_text(plan, tier, t["tag"], t["text"], config.settings) == []
        for d in r["dropped"]:
            if d["reason"].startswith("verification: "):
                tier = "instance" if any(o.tag == d["tag"] for o in plan.instances) else "group"
                requests = asked[(tier, d["tag"])]
                assert len(requests) == 2 and len(set(requests)) == 2  # asked again, as a new request
                redrafted += 1
    assert redrafted > 0  # a random tiny model writes no sentence that names its object right
