"""The verify stage: failed checks written into the records under each policy, resumable, counted on the card,
and put first in curation sheets."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow.dataset as ds
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.contracts.plan_schema import row_to_plan
from pipeline.contracts.shards import read_manifest
from pipeline.curation.export import ExportFilter, export_sheets
from pipeline.drafting.stage import run_draft
from pipeline.planning.stage import run_plan
from pipeline.release.dataset import DatasetSettings, write_dataset
from pipeline.synthetic.tiny_build import plan_config
from pipeline.verification.stage import VerificationConfig, draft_verifier, run_verify

WRONG = {"plane": "ship", "ship": "plane", "storage tank": "tennis court"}


@pytest.fixture(scope="module")
def planned(tiny_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("verify") / "out"
    run_plan(plan_config(tiny_root, out, "test"), progress=False)
    plans = [row_to_plan(r) for r in ds.dataset(out / "test/plans", format="parquet").to_table().to_pylist()]
    return out, plans


def records(out) -> dict:
    return {r["patch_id"]: r for r in ds.dataset(out / "test/records", format="parquet").to_table().to_pylist()}


def replies_with_errors(plans, path) -> dict[str, str]:
    """Replies as a VLM writes them, one instance sentence per patch naming the wrong category; {patch: bad tag}."""
    rows, bad = [], {}
    for p in plans:
        rows.append({"patch_id": p.patch_id, "tier": "holistic", "tag": "",
                     "text": "An aerial view of the area, with roads crossing it and some trees along the edges."})
        for o in sorted(p.instances, key=lambda o: o.mark):
            other = WRONG.get(o.category, "plane") if o.category != "plane" else "ship"
            if p.patch_id not in bad and other != o.category:
                bad[p.patch_id] = o.tag
                text = f"A large {other} with a grey surface stands out here."
            else:
                text = f"The {o.category} has a clean surface with crisp white markings."
            rows.append({"patch_id": p.patch_id, "tier": "instance", "tag": o.tag, "text": text})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return bad


def test_template_records_verify_clean_and_a_rerun_verifies_nothing_again(planned, tmp_path):
    out = tmp_path / "out"
    import shutil

    shutil.copytree(planned[0], out)
    run_draft(out, "test", progress=False)
    first = run_verify(out, "test", progress=False)
    recs = records(out)
    assert first.skipped == 0 and first.stats["verified"] == len(recs) > 0
    assert all(r["checks"] == [] for r in recs.values())  # verified: an empty list, not null
    assert read_manifest(out / "test/records")["verification"]["policy"] == "flag"
    again = run_verify(out, "test", progress=False)
    assert again.skipped == again.shards and again.stats == first.stats
    assert run_draft(out, "test", progress=False).stats["skipped"] == again.shards  # drafting still finds its shards
    other = run_verify(out, "test", VerificationConfig(policy="keep"), progress=False)
    assert other.skipped == 0  # other settings: verified again


def test_wrong_facts_are_flagged_kept_or_dropped_by_policy(planned, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(planned[0], out)
    bad = replies_with_errors(planned[1], tmp_path / "r.jsonl")
    assert bad
    run_draft(out, "test", progress=False, replies=tmp_path / "r.jsonl")
    drafted = records(out)
    summary = run_verify(out, "test", VerificationConfig(policy="keep"), progress=False)
    kept = records(out)
    for pid, tag in bad.items():
        found = {(c["tier"], c["tag"], c["check"]) for c in kept[pid]["checks"]}
        assert ("instance", tag, "category") in found, kept[pid]["checks"]
        assert kept[pid]["description"] == drafted[pid]["description"]  # keep: the text stays
    assert summary.stats["check: category"] >= len(bad) and summary.stats["flagged"] >= len(bad)

    # the curators see the riskiest patches first, and only flagged ones with --flagged
    sheets = export_sheets(out, "test", ExportFilter(flagged=True, order="risk"))
    index = json.loads((sheets.folder / "export.json").read_text())
    order = [pid for s in index["sheets"] for pid in s["patches"]]
    assert set(order) == {pid for pid, r in kept.items() if r["checks"]}
    risks = [len(kept[pid]["checks"]) for pid in order]
    assert risks == sorted(risks, reverse=True)
    html = (sheets.folder / "sheet-00000.html").read_text()
    assert 'class="flag"' in html and "category" in html

    dropped = run_verify(out, "test", VerificationConfig(policy="drop"), progress=False)
    after = records(out)
    for pid, tag in bad.items():
        r = after[pid]
        assert {"tag": tag, "reason": "verification: category"} in r["dropped"]
        if r["status"] == "ok":
            assert f"<p> {tag} </p>" not in r["description"] and len(r["phrases"]) == r["description"].count("[SEG]")
            assert tag not in {p["tag"] for p in r["phrases"]}
    assert dropped.stats["dropped by verification"] >= len(bad)


@pytest.mark.parametrize("policy", ["flag", "drop"])
def test_verifying_while_drafting_writes_what_the_verify_stage_would_and_leaves_it_nothing(planned, tmp_path, policy):
    import shutil

    config = VerificationConfig(policy=policy)
    bad = replies_with_errors(planned[1], tmp_path / "r.jsonl")
    after, in_draft = tmp_path / "after", tmp_path / "in-draft"
    for out in (after, in_draft):
        shutil.copytree(planned[0], out)
    run_draft(after, "test", progress=False, replies=tmp_path / "r.jsonl")
    staged = run_verify(after, "test", config, progress=False)
    run_draft(in_draft, "test", progress=False, replies=tmp_path / "r.jsonl", verify=draft_verifier(config))
    entries = read_manifest(in_draft / "test/records")["shards"]
    assert {e["verified"] for e in entries.values()} == {config.fingerprint()}
    assert records(in_draft) == records(after) and any(records(in_draft)[pid]["checks"] for pid in bad)
    left = run_verify(in_draft, "test", config, progress=False)
    assert left.skipped == left.shards > 0 and left.stats == staged.stats  # counted, nothing verified again
    assert records(in_draft) == records(after)
    assert draft_verifier(VerificationConfig(enabled=False)) is None


def test_the_card_counts_the_flags_per_check_and_per_tier(planned, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(planned[0], out)
    replies_with_errors(planned[1], tmp_path / "r.jsonl")
    run_draft(out, "test", progress=False, replies=tmp_path / "r.jsonl")
    run_verify(out, "test", progress=False)
    summary = write_dataset(out, ["test"], DatasetSettings(require_curation=[]))
    df = pd.read_parquet(summary.folder / "data/test")
    flagged = sum(len(c) > 0 for c in df["checks"])
    categories = sum(c["check"] == "category" for cs in df["checks"] for c in cs)
    card = (summary.folder / "README.md").read_text()
    assert flagged > 0 and f"Verification (policy flag): {flagged} of {len(df)} released patches flagged" in card
    assert f"category {categories}" in card and "by tier: " in card and "instance " in card


def test_the_cli_verifies_and_refuses_bad_settings_in_one_line(planned, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(planned[0], out)
    runner = CliRunner()
    res = runner.invoke(app, ["verify", str(out), "--split", "test", "-q"])
    assert res.exit_code == 2 and "run `geopixeld draft` for split 'test' first" in res.output
    run_draft(out, "test", progress=False)
    res = runner.invoke(app, ["verify", str(out), "--split", "test", "-q", "--policy", "drop"])
    assert res.exit_code == 0 and "policy drop" in res.output, res.output
    for args, says in ((["--policy", "maybe"], "policy"), (["--set", "settings.position_tolerance=9"], "position_tolerance")):
        res = runner.invoke(app, ["verify", str(out), "--split", "test", "-q", *args])
        assert res.exit_code == 2 and res.output.startswith("error:") and says in res.output, res.output


def test_draft_with_verification_settings_writes_verified_records(planned, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(planned[0], out)
    replies_with_errors(planned[1], tmp_path / "r.jsonl")
    (tmp_path / "v.yaml").write_text("policy: keep\n")
    res = CliRunner().invoke(app, ["draft", str(out), "--split", "test", "-q", "--drafter", "replay",
                                   "--replies", str(tmp_path / "r.jsonl"), "--verification", str(tmp_path / "v.yaml")])
    assert res.exit_code == 0, res.output
    assert all(r["checks"] is not None for r in records(out).values())
    assert any(r["checks"] for r in records(out).values())
    assert run_verify(out, "test", VerificationConfig(policy="keep"), progress=False).skipped > 0
