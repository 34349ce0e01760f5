"""The optional LMM judge against the real vLLM server: one yes/no request per kept instance and group sentence,
a "no" recorded as the check `judge` (kept by the verify stage), its cost counted apart, its replies cached.

What a random tiny model answers differs between CPUs, so the tests assert how verdicts become checks and what is
asked, never which verdict comes back."""

from __future__ import annotations

import base64
import json
from collections import Counter

import cv2
import numpy as np
import pyarrow.dataset as ds
import pytest

from pipeline.drafting.lmm_client import Endpoint
from pipeline.drafting.lmm_drafter import LMMSettings
from pipeline.drafting.stage import run_draft
from pipeline.planning.stage import run_plan
from pipeline.synthetic.tiny_build import plan_config
from pipeline.verification.stage import VerificationConfig, run_verify

pytestmark = [pytest.mark.server, pytest.mark.slow]


def _records(out) -> dict:
    return {r["patch_id"]: r for r in ds.dataset(out / "val/records", format="parquet").to_table().to_pylist()}


def test_the_judge_asks_once_per_kept_sentence_and_its_nos_become_checks(vllm_server, tiny_root, tmp_path):
    out = tmp_path / "out"
    run_plan(plan_config(tiny_root, out, filters={"max_objects": 20}), progress=False)
    ep = Endpoint(vllm_server.url, vllm_server.model, vllm_server.api_key_env)
    sent: list[dict] = []
    import pipeline.drafting.lmm_drafter as lmm_drafter

    real_init = lmm_drafter.Drafting.__post_init__

    def watched(self):  # every request actually sent, as the throughput benchmark sees them
        real_init(self)
        self.on_sent = sent.append

    lmm_drafter.Drafting.__post_init__ = watched
    try:
        summary = run_draft(out, "val", progress=False, lmm=LMMSettings([ep], max_in_flight=4, judge=True))
    finally:
        lmm_drafter.Drafting.__post_init__ = real_init
    recs = _records(out)
    kept = sum(len(r["instance_texts"]) + len(r["group_texts"]) for r in recs.values() if r["status"] == "ok")
    judged = [m for m in sent if m["tier"] == "judge"]
    questions = Counter(m["messages"][0]["content"][1]["text"] for m in judged)
    assert kept > 0 and len(questions) <= kept and max(questions.values()) <= 3  # one question a sentence (retried)
    s = summary.stats
    judge_failures = sum(f["tier"] == "judge" for r in recs.values() for f in r["failures"])
    assert s["judge_requests"] == len(judged) and s["judge_yes"] + s["judge_no"] + judge_failures == kept
    assert s["judge_prompt_tokens"] == sum(m["usage"]["prompt_tokens"] for m in judged) > 0
    assert "LMM judge" in summary.table()
    for m in judged:  # an image and the sentence in every request, the verdict schema enforced
        parts = m["messages"][0]["content"]
        assert parts[0]["type"] == "image_url" and "Sentence:" in parts[1]["text"]
        assert m["response_format"]["json_schema"]["schema"]["properties"]["verdict"]["enum"] == ["yes", "no"]
    group_crops = [m for m in judged if "cropped around" in m["messages"][0]["content"][1]["text"]]
    for m in group_crops:  # a group is judged on a crop of the patch, not the whole patch
        png = base64.b64decode(m["messages"][0]["content"][0]["image_url"]["url"].split(",", 1)[1])
        h, w = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR).shape[:2]
        assert (h, w) != (800, 800) and min(h, w) >= 1
    judged_tags = {(r["patch_id"], c["tier"], c["tag"]) for r in recs.values() for c in (r["checks"] or [])}
    for pid, tier, tag in judged_tags:  # a no is a check of a text the record kept
        texts = recs[pid]["instance_texts" if tier == "instance" else "group_texts"]
        assert tag in {t["tag"] for t in texts}
    assert sum(len(r["checks"] or []) for r in recs.values()) == s["judge_no"]
    assert all(c["check"] == "judge" and c["detail"] for r in recs.values() for c in (r["checks"] or []))
    sampling = {json.loads(r["provenance"]["sampling"]).get("judge") for r in recs.values() if r["status"] == "ok"}
    assert sampling == {True}

    run_verify(out, "val", VerificationConfig(policy="keep"), progress=False)  # the judge's checks stay
    after = _records(out)
    for pid, r in recs.items():
        before = {(c["tier"], c["tag"], c["detail"]) for c in (r["checks"] or [])}
        now = {(c["tier"], c["tag"], c["detail"]) for c in after[pid]["checks"] if c["check"] == "judge"}
        assert now == before

    sent.clear()  # drafted again: every judge reply comes from the cache
    import shutil

    shutil.rmtree(out / "val/records")
    lmm_drafter.Drafting.__post_init__ = watched
    try:
        again = run_draft(out, "val", progress=False, lmm=LMMSettings([ep], max_in_flight=4, judge=True))
    finally:
        lmm_drafter.Drafting.__post_init__ = real_init
    assert not [m for m in sent if m["tier"] == "judge"] and again.stats["judge_requests"] == 0
    assert again.stats["judge_no"] == s["judge_no"]


def test_the_judge_is_off_by_default_and_needs_an_lmm(tiny_root, tmp_path):
    from typer.testing import CliRunner

    from flows.params import BuildParams
    from pipeline.cli import app

    assert VerificationConfig().judge is False and LMMSettings([]).judge is False
    with pytest.raises(ValueError, match="verification.judge"):
        BuildParams.model_validate({"source": {"root": str(tiny_root)}, "verification": {"judge": True}})
    out = tmp_path / "out"
    run_plan(plan_config(tiny_root, out, filters={"max_objects": 20}), progress=False)
    res = CliRunner().invoke(app, ["draft", str(out), "--split", "val", "--judge", "-q"])
    assert res.exit_code == 2 and "--judge" in res.output and "--drafter lmm" in res.output
