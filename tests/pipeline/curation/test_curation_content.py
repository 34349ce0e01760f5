"""Pure curation logic: sentences of a description, edit checks, applying decisions, and the two policies."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.contracts import masks
from pipeline.contracts.gcg_schema import GCG_SCHEMA_VERSION, Dropped, GCGRecord, Phrase, Provenance
from pipeline.curation.content import (REJECTED, CurationError, Decided, Resolution, apply, check_edit, content_hash,
                                       segments)
from pipeline.curation.policies import resolve
from pipeline.contracts.grounding import PHRASE_RE

T = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _rle(x0: int) -> dict:
    m = np.zeros((20, 20), np.uint8)
    m[2:6, x0 : x0 + 3] = 1
    return masks.from_coco(__import__("pycocotools.mask", fromlist=["encode"]).encode(np.asfortranarray(m)))


def _record(description: str) -> GCGRecord:
    phrases = [Phrase(m["text"], m.start("text"), m.end("text"), "instance", m["text"].rsplit("-", 1)[0], [i + 1],
                      _rle(i * 4)) for i, m in enumerate(PHRASE_RE.finditer(description))]
    return GCGRecord("P1", "val", None, 20, 20, description=description, phrases=phrases, holistic="h",
                     dropped=[Dropped("ship-9", "planned but left out")], status="ok", provenance=Provenance("lmm"))


DESC = ("An aerial view. The <p> plane-1 </p> [SEG] is large. The <p> tennis court-1 </p> [SEG] sits next to the "
        "<p> plane-2 </p> [SEG]!  A road runs across.")


def test_segments_cut_sentences_never_inside_markup_and_join_back():
    desc = "Lead. The <p> odd. tag-1 </p> [SEG] is here?  Yes <p> b-1 </p> [SEG] and <p> c-1 </p> [SEG]. End"
    segs = segments(desc)
    assert "".join(desc[s.start : s.end] + s.sep for s in segs) == desc
    assert [s.tags for s in segs] == [(), ("odd. tag-1",), ("b-1", "c-1"), ()]
    assert segments(DESC)[2].tags == ("tennis court-1", "plane-2")


def test_check_edit_keeps_the_tags_of_the_sentence():
    tags = ("tennis court-1", "plane-2")
    ok = "A <p> tennis court-1 </p> [SEG] with blue lines beside <p> plane-2 </p> [SEG]."
    assert check_edit(ok, tags, set(tags), "tennis court-1") is None
    assert "must stay" in check_edit("A court beside <p> plane-2 </p> [SEG].", tags, set(tags), "tennis court-1")
    # a phrase rejected in the same file may leave the sentence
    assert check_edit("A <p> tennis court-1 </p> [SEG].", tags, {"tennis court-1"}, "tennis court-1") is None
    assert "not one of" in check_edit(ok + " <p> plane-1 </p> [SEG]", tags, set(tags), "plane-2")
    assert "unbalanced" in check_edit("A <p> tennis court-1 [SEG] <p> plane-2 </p> [SEG]", tags, set(tags), "plane-2")
    assert "more than once" in check_edit(ok + " <p> plane-2 </p> [SEG]", tags, set(tags), "plane-2")
    assert "empty" in check_edit("  ", tags, set(), "plane-2")


def test_apply_edit_reject_and_respan():
    rec = _record(DESC)
    res = Resolution(
        patch=Decided("accept", T, "ann"),
        phrases={"plane-1": Decided("reject", T, "ann"),
                 "tennis court-1": Decided("edit", T, "ann",
                                           "The clay <p> tennis court-1 </p> [SEG] lies beside the <p> plane-2 </p> [SEG]."),
                 "plane-2": Decided("reject", T + timedelta(seconds=1), "ann")})
    out, counts = apply(rec, res)
    assert out.description == "An aerial view. The clay <p> tennis court-1 </p> [SEG] lies beside the plane.  A road runs across."
    assert [p.tag for p in out.phrases] == ["tennis court-1"]
    p = out.phrases[0]
    assert out.description[p.start : p.end] == "tennis court-1"
    assert p.rle == rec.phrases[1].rle and p.object_ids == [2] and p.tier == "instance"  # the mask stays with its tag
    assert out.dropped == rec.dropped + [Dropped("plane-1", REJECTED), Dropped("plane-2", REJECTED)]
    assert out.curation_status == "accepted" and out.status == "ok"
    assert counts == {"phrases_edited": 1, "phrases_rejected": 2}
    assert rec.description == DESC and len(rec.dropped) == 1  # the input record is not changed


def test_accepting_a_patch_accepts_undecided_phrases_and_flags_count_only_explicit_ones():
    rec = _record(DESC)
    _, counts = apply(rec, Resolution(patch=Decided("accept", T, "a")))
    assert counts == {"phrases_accepted": 3}
    out, counts = apply(rec, Resolution(patch=Decided("flag", T, "a", "blurry"), phrases={"plane-1": Decided("accept", T, "a")}))
    assert out.curation_status == "flagged" and counts == {"phrases_accepted": 1}
    out, counts = apply(rec, Resolution(patch=Decided("reject", T, "a")))
    assert out.curation_status == "rejected" and not counts
    out, _ = apply(rec, Resolution(phrases={"plane-1": Decided("accept", T, "a")}))
    assert out.curation_status == "pending" and out.description == DESC


def test_an_edit_that_invents_a_tag_is_refused():
    rec = _record(DESC)
    bad = Resolution(phrases={"plane-1": Decided("edit", T, "a", "The <p> plane-1 </p> [SEG] near <p> ship-1 </p> [SEG].")})
    with pytest.raises(CurationError, match="ship-1"):
        apply(rec, bad)


def test_content_hash_ignores_curation_status_only():
    rec = _record(DESC)
    assert content_hash(rec) == content_hash(replace(rec, curation_status="accepted"))
    assert content_hash(rec) != content_hash(replace(rec, description=DESC + " "))
    assert content_hash(rec) != content_hash(replace(rec, phrases=[replace(rec.phrases[0], tier="group"), *rec.phrases[1:]]))


DATA = Path(__file__).parents[1] / "contracts" / "data"  # GCG schema 2 records and their plans (make_gcg_v2.py)


def test_decisions_on_version_2_records_still_hold_on_the_same_content_as_later_versions():
    """Exports and the ledger keep content hashes computed on schema-2 rows: the same record, read from its v2 row
    or written as v4 (with its plan's georeference and verified, with failed checks or none), has the hash
    schema 2 computed."""
    plans = {r["patch_id"]: r for r in pq.read_table(DATA / "gcg_v2_plans.parquet").to_pylist()}
    for row in pq.read_table(DATA / "gcg_v2_records.parquet").to_pylist():
        body = {k: v for k, v in row.items() if k != "curation_status"}  # the hash as schema 2 computed it
        v2_hash = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                                            default=str).encode()).hexdigest()
        assert content_hash(GCGRecord.from_row(row)) == v2_hash
        plan = plans[row["patch_id"]]
        v3 = {**row, "schema_version": GCG_SCHEMA_VERSION, **{k: plan[k] for k in ("source_image", "window", "crs", "transform")},
              "phrases": [{**{k: v for k, v in p.items() if k != "kind"}, "tier": p["kind"]} for p in row["phrases"]],
              "checks": [{"tier": "merge", "tag": "", "check": "absent", "detail": "says ships; the patch has none"}]}
        rec = GCGRecord.from_row(v3)
        assert rec.window is not None and rec.checks and content_hash(rec) == v2_hash
        assert content_hash(replace(rec, checks=[])) == content_hash(replace(rec, checks=None)) == v2_hash
        assert content_hash(replace(rec, holistic="another text")) != v2_hash


def _row(curator, item, decision, minutes, text=None, sha="f1"):
    return {"curator": curator, "level": "patch" if item == "patch" else "phrase", "tag": None if item == "patch" else item,
            "decision": decision, "text": text, "decided_at": T + timedelta(minutes=minutes), "imported_at": T,
            "decision_file_sha256": sha, "seq": 0}


def test_policy_latest_wins_and_reports_the_disagreement():
    rows = [_row("ann", "patch", "accept", 1), _row("bob", "patch", "reject", 2), _row("ann", "plane-1", "accept", 1),
            _row("bob", "plane-1", "accept", 3)]
    res, conflicts = resolve("P1", rows, "latest")
    assert res.patch.decision == "reject" and res.patch.curator == "bob" and not res.needs_look
    assert [(c.item, c.settled) for c in conflicts] == [("patch", "reject")]  # both accepted plane-1: no conflict


def test_same_curator_changing_their_mind_is_no_conflict():
    res, conflicts = resolve("P1", [_row("ann", "patch", "accept", 1), _row("ann", "patch", "reject", 5)], "third-look")
    assert res.patch.decision == "reject" and not conflicts


def test_policy_third_look_holds_a_tie_until_a_third_curator_decides():
    rows = [_row("ann", "patch", "accept", 1), _row("bob", "patch", "reject", 2)]
    res, conflicts = resolve("P1", rows, "third-look")
    assert res.patch is None and res.needs_look and conflicts[0].settled is None
    out, _ = apply(_record(DESC), res)
    assert out.curation_status == "pending"
    res, conflicts = resolve("P1", rows + [_row("cy", "patch", "accept", 0)], "third-look")
    assert res.patch.decision == "accept" and not res.needs_look and conflicts[0].settled == "accept"


def test_edits_with_different_texts_disagree():
    rows = [_row("ann", "plane-1", "edit", 1, "The <p> plane-1 </p> [SEG] is white."),
            _row("bob", "plane-1", "edit", 2, "The  <p> plane-1 </p> [SEG] is white.")]
    assert resolve("P1", rows, "third-look")[1] == []  # the same text up to spacing
    rows[1]["text"] = "The <p> plane-1 </p> [SEG] is grey."
    res, conflicts = resolve("P1", rows, "third-look")
    assert res.needs_look and "plane-1" not in res.phrases and len(conflicts) == 1
    with pytest.raises(ValueError, match="policy"):
        resolve("P1", rows, "majority")
