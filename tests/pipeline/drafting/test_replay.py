"""The replay drafter: drafts made elsewhere go through the LMM drafter's validation, grounding and merge."""

from __future__ import annotations

import json

import pyarrow.dataset as ds
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.contracts.plan_schema import row_to_plan
from pipeline.drafting.replay import ReplayError, read_replies
from pipeline.drafting.stage import run_draft
from pipeline.planning.stage import run_plan
from pipeline.synthetic.tiny_build import plan_config


@pytest.fixture(scope="module")
def planned(tiny_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("replay") / "out"
    run_plan(plan_config(tiny_root, out, "test"), progress=False)
    plans = [row_to_plan(r) for r in ds.dataset(out / "test/plans", format="parquet").to_table().to_pylist()]
    return out, [p for p in plans if p.instances and p.groups]


def lines_for(plan, *, instances=True, merge=None) -> list[dict]:
    """A VLM's replies for one patch, as another team's run would hand them over."""
    rows = [{"patch_id": plan.patch_id, "tier": "holistic", "tag": "",
             "text": "An aerial view of a sports complex beside a road, with trees along the edges."}]
    if instances:
        rows += [{"patch_id": plan.patch_id, "tier": "instance", "tag": o.tag,
                  "text": f"The {o.category} has a worn surface and white lines."} for o in plan.instances]
    rows += [{"patch_id": plan.patch_id, "tier": "group", "tag": g.tag,
              "text": f"A cluster of {g.category}s sits close together."} for g in plan.groups]
    if merge is not None:
        rows.append({"patch_id": plan.patch_id, "tier": "merge", "tag": "", "text": merge})
    return rows


def write(path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def records(out) -> dict:
    return {r["patch_id"]: r for r in ds.dataset(out / "test/records", format="parquet").to_table().to_pylist()}


def test_replayed_texts_are_grounded_merged_and_named_in_the_provenance(planned, tmp_path):
    out, plans = planned
    a, b, c = plans[:3]
    tags = [o.tag for o in sorted(b.instances, key=lambda o: o.mark)] + [g.tag for g in b.groups]
    merged = "A sports complex. " + " ".join(f"The <p> {t} </p> is visible." for t in tags)  # [SEG] left out
    replies = tmp_path / "replies.jsonl"
    write(replies, lines_for(a) + lines_for(b, merge=merged) + lines_for(c, instances=False))
    summary = run_draft(out, "test", progress=False, replies=replies)
    recs = records(out)
    assert summary.stats["requests_sent"] == 0 and len(recs) == summary.stats["records"]
    ra, rb, rc = recs[a.patch_id], recs[b.patch_id], recs[c.patch_id]
    sha = read_replies(replies).sha256
    for r in (ra, rb, rc):
        assert r["provenance"]["drafter"] == "replay" and r["status"] == "ok"
        meta = json.loads(r["provenance"]["sampling"])
        assert meta["replies"] == str(replies) and meta["sha256"] == sha
    # no merge line: the deterministic assembly, every tag grounded once
    assert json.loads(ra["provenance"]["sampling"])["merge"] == "assembly"
    planned_tags = [o.tag for o in a.instances] + [g.tag for g in a.groups]
    assert all(ra["description"].count(f"<p> {t} </p> [SEG]") == 1 for t in planned_tags)
    assert ra["description"].count("[SEG]") == len(planned_tags) == len(ra["phrases"])
    # a merge line is the merged description (its missing [SEG] put back)
    assert json.loads(rb["provenance"]["sampling"])["merge"] == "replay"
    assert rb["description"].startswith("A sports complex.") and rb["description"].count("[SEG]") == len(tags)
    # missing instance lines are failed replies: named, and the instances dropped from the description
    assert {f["tag"] for f in rc["failures"]} == {o.tag for o in c.instances}
    assert {d["tag"] for d in rc["dropped"]} == {o.tag for o in c.instances}
    assert all(f"<p> {o.tag} </p>" not in rc["description"] for o in c.instances)
    # a patch the file does not mention has no holistic text: failed, never silently kept
    others = [r for pid, r in recs.items() if pid not in {a.patch_id, b.patch_id, c.patch_id}]
    assert others and all(r["status"] == "failed" and r["error"] == "no valid holistic description" for r in others)


def test_replayed_text_breaking_the_reply_schema_is_refused_like_a_served_reply(planned, tmp_path):
    out, plans = planned
    a = plans[0]
    rows = lines_for(a)
    tag = a.instances[0].tag
    bad = next(r for r in rows if r["tag"] == tag)
    bad["text"] = f"The <p> {tag} </p> [SEG] is marked 1."  # markup in a tier text
    replies = tmp_path / "replies.jsonl"
    write(replies, rows)
    run_draft(out, "test", progress=False, replies=replies)
    rec = records(out)[a.patch_id]
    assert [f["tag"] for f in rec["failures"]] == [tag] and "schema" in rec["failures"][0]["reason"]
    assert tag in {d["tag"] for d in rec["dropped"]}


@pytest.mark.parametrize("line, message", [
    ("not json", "line 2: not JSON"),
    ('{"patch_id": "x", "tier": "holistic", "tag": ""}', "line 2: missing key(s) ['text']"),
    ('{"patch_id": "x", "tier": "caption", "tag": "", "text": "t"}', "line 2: tier 'caption' is not one of"),
    ('{"patch_id": "x", "tier": "group", "tag": "", "text": "t"}', "line 2: an group line needs the tag"),
    ('{"patch_id": "x", "tier": "merge", "tag": "planes-1", "text": "t"}', "line 2: a merge line has an empty tag"),
    ('{"patch_id": "x", "tier": "holistic", "tag": "", "text": 3}', "line 2: text must be text"),
    ('[1, 2]', "line 2: a line must hold a JSON object"),
])
def test_a_bad_line_is_named_with_its_file_and_number_and_nothing_is_drafted(planned, tmp_path, line, message):
    out, plans = planned
    replies = tmp_path / "replies.jsonl"
    replies.write_text(json.dumps(lines_for(plans[0])[0]) + "\n" + line + "\n")
    before = sorted(p.stat().st_mtime_ns for p in (out / "test").glob("records/*"))
    with pytest.raises(ReplayError) as err:
        run_draft(out, "test", progress=False, replies=replies)
    assert str(err.value).startswith(f"{replies} {message}")
    assert sorted(p.stat().st_mtime_ns for p in (out / "test").glob("records/*")) == before


def test_unknown_patches_tags_and_repeated_lines_are_refused(planned, tmp_path):
    out, plans = planned
    a = plans[0]
    replies = tmp_path / "r.jsonl"
    write(replies, lines_for(a) + [{"patch_id": "P9999", "tier": "holistic", "tag": "", "text": "x"}])
    with pytest.raises(ReplayError, match=r"line \d+: patch 'P9999' is not planned in split 'test'"):
        run_draft(out, "test", progress=False, replies=replies)
    write(replies, lines_for(a) + [{"patch_id": a.patch_id, "tier": "group", "tag": a.instances[0].tag, "text": "x"}])
    with pytest.raises(ReplayError, match=f"has no group '{a.instances[0].tag}'"):
        run_draft(out, "test", progress=False, replies=replies)
    write(replies, lines_for(a) + lines_for(a)[:1])
    with pytest.raises(ReplayError, match=r"a second holistic text for patch .* \(first on line 1\)"):
        run_draft(out, "test", progress=False, replies=replies)


def test_the_cli_replays_a_file_and_refuses_what_does_not_fit(planned, tmp_path):
    out, plans = planned
    replies = tmp_path / "r.jsonl"
    write(replies, lines_for(plans[0]))
    runner = CliRunner()
    res = runner.invoke(app, ["draft", str(out), "--split", "test", "--drafter", "replay", "--replies", str(replies), "-q"])
    assert res.exit_code == 0, res.output
    assert records(out)[plans[0].patch_id]["provenance"]["drafter"] == "replay"
    for args, says in ((["--drafter", "replay"], "needs --replies"), (["--replies", str(replies)], "needs --drafter replay"),
                       (["--drafter", "replay", "--replies", str(tmp_path)], "is a folder, not a regular file")):
        res = runner.invoke(app, ["draft", str(out), "--split", "test", *args, "-q"])
        assert res.exit_code == 2 and says in res.output and res.output.startswith("error:"), res.output
