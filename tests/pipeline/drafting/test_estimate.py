"""The drafting cost estimate: the drafter's own requests counted, image tokens by each family's formula."""

from __future__ import annotations

import pyarrow.dataset as ds
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.contracts.plan_schema import row_to_plan
from pipeline.drafting.estimate import FAMILIES, estimate, gemma3_tokens, internvl_tokens, qwen_vl_tokens
from pipeline.planning.stage import run_plan
from pipeline.synthetic.tiny_build import plan_config


def test_image_tokens_follow_each_familys_processor():
    # Qwen2.5-VL: 800 px rounds to 812 = 29 cells of 28 px a side; + vision start and end
    assert qwen_vl_tokens(800, 800) == 29 * 29 + 2
    assert qwen_vl_tokens(5000, 5000) == 35 * 35 + 2  # scaled down under max_pixels (1280 cells), floored to 28 px
    # InternVL: a square 800 px patch is 2x2 tiles of 448 (it covers more than half of them) + a thumbnail
    assert internvl_tokens(800, 800) == 5 * 256 + 2
    assert internvl_tokens(1147, 800) == 7 * 256 + 2  # aspect 1.43: 3x2 tiles + thumbnail
    assert internvl_tokens(300, 300) == 256 + 2  # one tile, no thumbnail
    assert gemma3_tokens(800, 800) == gemma3_tokens(3000, 200) == 258


@pytest.fixture(scope="module")
def plans(tiny_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("estimate") / "out"
    run_plan(plan_config(tiny_root, out, "test"), progress=False)
    return out, [row_to_plan(r) for r in ds.dataset(out / "test/plans", format="parquet").to_table().to_pylist()]


def test_requests_are_the_drafters_per_mode(plans):
    _, ps = plans
    marks, groups = sum(len(p.instances) for p in ps), sum(len(p.groups) for p in ps)
    tagged = sum(bool(p.instances or p.groups) for p in ps)
    per_object = estimate(ps, FAMILIES["qwen2.5-vl"], "per-object")
    per_patch = estimate(ps, FAMILIES["qwen2.5-vl"], "per-patch")
    assert per_object.tiers["instance"].requests == marks and per_patch.tiers["instance"].requests == sum(
        bool(p.instances) for p in ps)
    for e in (per_object, per_patch):
        assert e.tiers["holistic"].requests == len(ps) and e.tiers["group"].requests == groups
        assert e.tiers["merge"].requests == tagged and e.tiers["merge"].image_tokens == 0  # text only
        assert e.tiers["holistic"].image_tokens == sum(qwen_vl_tokens(p.width, p.height) for p in ps)
    assert per_patch.total().prompt_tokens < per_object.total().prompt_tokens  # one set-of-marks image a patch
    assert per_object.tiers["instance"].image_tokens == sum(len(p.instances) * qwen_vl_tokens(p.width, p.height) for p in ps)
    counted = estimate(ps, FAMILIES["qwen2.5-vl"], "per-object", count_tokens=lambda s: 1)
    assert counted.tiers["instance"].text_tokens == marks  # a given tokenizer counts the prompt text


def test_the_cli_prints_the_estimate_and_sends_nothing(plans):
    out, ps = plans
    res = CliRunner().invoke(app, ["draft", str(out), "--split", "test", "--estimate", "--family", "internvl3",
                                   "--requests-per-second", "2"])
    assert res.exit_code == 0, res.output
    assert "annotator family internvl3" in res.output and "per-patch instead" in res.output
    assert "at 2 requests/s" in res.output and not (out / "test/records").exists()
    bad = CliRunner().invoke(app, ["draft", str(out), "--split", "test", "--estimate", "--requests-per-second", "-1"])
    assert bad.exit_code == 2 and "--requests-per-second must be a positive number" in bad.output


def test_the_judge_adds_one_request_per_sentence_groups_on_their_crop(plans):
    out, ps = plans
    marks, groups = sum(len(p.instances) for p in ps), sum(len(p.groups) for p in ps)
    fam = FAMILIES["qwen2.5-vl"]
    plain, judged = estimate(ps, fam), estimate(ps, fam, judge=True)
    assert "judge" not in plain.tiers and judged.tiers["judge"].requests == marks + groups > 0
    full = sum(len(p.instances) * qwen_vl_tokens(p.width, p.height) for p in ps)
    assert full < judged.tiers["judge"].image_tokens < full + groups * qwen_vl_tokens(800, 800)  # crops are smaller
    assert judged.total().requests == plain.total().requests + marks + groups
    res = CliRunner().invoke(app, ["draft", str(out), "--split", "test", "--estimate", "--judge"])
    assert res.exit_code == 0 and "  judge " in res.output, res.output
