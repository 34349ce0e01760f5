"""Export sheets, import decision files (made here as the sheet writes them), read the curated Parquet back."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.curation import (DecisionFileError, ExportFilter, SheetSettings, curated_records, curation_summary,
                               export_sheets, import_decisions, stage_for_build)
from pipeline.curation.content import REJECTED, segments
from pipeline.curation.ledger import LEDGER_SCHEMA
from pipeline.contracts.grounding import PHRASE_RE
from pipeline.contracts.shards import read_manifest
from tests.pipeline.curation.curation_helpers import decision_file, export_manifest, records, rewrite_records


def _export(out: Path, per_sheet: int = 5, **flt):
    return export_sheets(out, "val", ExportFilter(**flt), SheetSettings(per_sheet=per_sheet))


def _snapshot(*folders: Path) -> dict:
    return {str(p): (p.stat().st_mtime_ns, p.read_bytes()) for f in folders for p in sorted(Path(f).rglob("*")) if p.is_file()}


def test_export_writes_self_contained_sheets_with_a_restrictive_csp(drafted):
    res = _export(drafted)
    assert res.patches == 14 and len(res.sheets) == 3  # 5 + 5 + 4
    m = export_manifest(res.folder)
    assert sorted(m["patches"]) == sorted(records(drafted)) and m["export_id"] == res.export_id
    html = res.sheets[0].read_text()
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)[1].replace("&#x27;", "'")
    assert csp.startswith("default-src 'none'; img-src data:;") and "unsafe" not in csp
    script = re.search(r"<script>(.*?)</script>", html, re.S)[1]
    style = re.search(r"<style>(.*?)</style>", html, re.S)[1]
    for body, directive in ((script, "script-src"), (style, "style-src")):  # the hashes allow exactly these blocks
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"{directive} 'sha256-{digest}'" in csp
    urls = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert urls and all(u.startswith("data:") for u in urls)  # no file, no network resource
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html
    data = json.loads(re.search(r'<script type="application/json" id="sheet-data">(.*?)</script>', html, re.S)[1])
    assert [p["id"] for p in data["patches"]] == m["sheets"][0]["patches"]
    recs = records(drafted)
    plans = {r["patch_id"]: r for r in pq.read_table(drafted / "val/plans/plans-00000.parquet").to_pylist()}
    sections = re.findall(r'<section class="patch".*?</section>', html, re.S)
    for p, section in zip(data["patches"], sections, strict=True):
        r = recs[p["id"]]
        assert [ph["tag"] for ph in p["phrases"]] == [ph["tag"] for ph in r["phrases"]]
        assert "".join(s["text"] + g.sep for s, g in zip(p["segs"], segments(r["description"]))) == r["description"]
        assert len(re.findall(r'<path class="mask c(\d+)" data-i="\1"', section)) == len(r["phrases"])  # one mask each
        assert len(re.findall(r'<mark class="ph c(\d+)" data-i="\1"', section)) == len(r["phrases"])  # phrase, same colour
        assert section.count("<rect x=") == len(plans[p["id"]]["marks"])  # the set-of-marks numbers
    again = _export(drafted)  # the same selection: found, nothing rewritten
    assert again.existing and again.export_id == res.export_id


def test_export_filters(drafted):
    assert _export(drafted, drafter="lmm").export_id is None
    assert _export(drafted, status="failed").export_id is None
    pids = sorted(records(drafted))
    failed = set(pids[:2])

    def fail(r):
        if r["patch_id"] in failed:
            r.update(status="failed", description=None, phrases=[], error="merge lost a tag")

    rewrite_records(drafted, fail)
    res = _export(drafted, status="failed")
    assert set(export_manifest(res.folder)["patches"]) == failed
    assert "Failed grounding: merge lost a tag" in res.sheets[0].read_text()
    res = _export(drafted, patch_ids=[pids[5], pids[7]])
    assert set(export_manifest(res.folder)["patches"]) == {pids[5], pids[7]}
    assert _export(drafted, limit=3).patches == 3
    with pytest.raises(ValueError, match="no record"):
        _export(drafted, patch_ids=["P9999"])


def _first_sentence_edit(rec: dict, tag: str) -> str:
    seg = next(s for s in segments(rec["description"]) if tag in s.tags)
    return "Edited: " + rec["description"][seg.start : seg.end]


def test_round_trip_applies_decisions_and_records_them(drafted, tmp_path):
    res = _export(drafted)
    sheet = export_manifest(res.folder)["sheets"][0]["patches"]
    recs = records(drafted)
    a, b, c, d = sheet[:4]
    t_edit, t_rej = recs[a]["phrases"][0]["tag"], recs[a]["phrases"][1]["tag"]
    edited = _first_sentence_edit(recs[a], t_edit)
    f = decision_file(res.folder, tmp_path / "ann.json", "ann", {
        a: {"decision": "accept", "phrases": [(t_edit, "edit", edited, 1), (t_rej, "reject", None, 2)]},
        b: {"decision": "reject"},
        c: {"decision": "flag", "note": "mask of the court looks shifted"},
        d: {"phrases": [(recs[d]["phrases"][0]["tag"], "accept", None, 3)]},
    })
    result = import_decisions(drafted, [f])
    assert [s for _, s in result.files] == ["imported"] and result.decisions == 6
    cur = records(drafted, folder="curated")
    assert sorted(cur) == sorted(recs)  # every patch is in the curated shards
    ra = cur[a]
    assert ra["curation_status"] == "accepted" and "Edited: " in ra["description"]
    assert [p["tag"] for p in ra["phrases"]] == [p["tag"] for p in recs[a]["phrases"] if p["tag"] != t_rej]
    assert all(ra["description"][p["start"] : p["end"]] == p["tag"] for p in ra["phrases"])
    assert ra["description"].count("[SEG]") == len(ra["phrases"]) == len(PHRASE_RE.findall(ra["description"]))
    assert {"tag": t_rej, "reason": REJECTED} in ra["dropped"] and t_rej not in ra["description"]
    assert (cur[b]["curation_status"], cur[c]["curation_status"], cur[d]["curation_status"]) == ("rejected", "flagged", "pending")
    assert cur[d]["description"] == recs[d]["description"]
    led = pq.read_table(next((drafted / "val/curation/ledger").glob("*.parquet")))
    assert led.schema.equals(LEDGER_SCHEMA, check_metadata=False)
    rows = led.to_pylist()
    assert {r["curator"] for r in rows} == {"ann"} and {r["sheet_id"] for r in rows} == {f"{res.export_id}-00000"}
    assert rows[0]["decision_file_sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    assert {(r["patch_id"], r["level"], r["tag"], r["decision"]) for r in rows} >= {
        (a, "patch", None, "accept"), (a, "phrase", t_edit, "edit"), (c, "patch", None, "flag")}
    assert next(r for r in rows if r["patch_id"] == c)["text"] == "mask of the court looks shifted"
    s = curation_summary(drafted, "val")
    n_a = len(recs[a]["phrases"])
    assert (s.patches, s.decided, s.accepted_patches, s.rejected_patches, s.flagged) == (14, 3, 1, 1, 1)
    assert (s.phrases_edited, s.phrases_rejected, s.phrases_accepted) == (1, 1, n_a - 2 + 1)
    assert not s.complete
    table = curated_records(drafted, "val")
    assert table.num_rows == 14 and table.schema.names == pq.read_schema(next((drafted / "val/records").glob("*.parquet"))).names


def test_importing_the_same_file_twice_changes_nothing(drafted, tmp_path):
    res = _export(drafted)
    pid = export_manifest(res.folder)["sheets"][0]["patches"][0]
    f = decision_file(res.folder, tmp_path / "d.json", "ann", {pid: {"decision": "accept"}})
    import_decisions(drafted, [f])
    before = _snapshot(drafted / "val/curated", drafted / "val/curation")
    again = import_decisions(drafted, [f, f])
    assert [s for _, s in again.files] == ["already imported", "already imported"] and again.decisions == 0
    assert _snapshot(drafted / "val/curated", drafted / "val/curation") == before


def test_complete_after_every_patch_is_decided_and_stage_for_build(drafted, tmp_path):
    assert curated_records(drafted, "val") is None
    staged = stage_for_build(drafted, "val")
    assert staged["patches"] == 14 and staged["decided"] == 0 and staged["sheets"] == 1
    folder = Path(staged["sheets in"])
    pids = export_manifest(folder)["sheets"][0]["patches"]
    f = decision_file(folder, tmp_path / "all.json", "ann", {p: {"decision": "accept"} for p in pids})
    import_decisions(drafted, [f])
    s = curation_summary(drafted, "val")
    n_phrases = sum(len(r["phrases"]) for r in records(drafted).values())
    assert s.complete and s.decided == s.accepted_patches == 14 and s.phrases_accepted == n_phrases
    assert stage_for_build(drafted, "val") == {"patches": 14, "decided": 14, "sheets": 0, "sheets in": ""}
    # a record drafted again since: its decision no longer holds, the split is no longer complete
    rewrite_records(drafted, lambda r: r.update(holistic=r["holistic"] + " Redrafted.") if r["patch_id"] == pids[0] else None)
    s = curation_summary(drafted, "val")
    assert not s.complete and s.decided == 13 and s.stale_decisions == 1
    staged = stage_for_build(drafted, "val")
    assert staged["sheets"] == 1 and export_manifest(Path(staged["sheets in"]))["sheets"][0]["patches"] == [pids[0]]
    assert records(drafted, folder="curated")[pids[0]]["curation_status"] == "pending"


def test_curators_who_disagree_are_reported_and_the_policy_decides(drafted, tmp_path):
    res = _export(drafted)
    pid = export_manifest(res.folder)["sheets"][0]["patches"][0]
    ann = decision_file(res.folder, tmp_path / "ann.json", "ann", {pid: {"decision": "accept", "at": 1}})
    bob = decision_file(res.folder, tmp_path / "bob.json", "bob", {pid: {"decision": "reject", "at": 2}})
    result = import_decisions(drafted, [ann, bob])
    c = result.curated["val"]
    assert [(x.patch_id, x.item, x.decisions, x.settled) for x in c.conflicts] == [
        (pid, "patch", {"ann": "accept", "bob": "reject"}, "reject")]
    assert "disagreement" in result.table() and records(drafted, folder="curated")[pid]["curation_status"] == "rejected"
    assert read_manifest(drafted / "val/curated")["conflicts"][0]["patch_id"] == pid
    c = import_decisions(drafted, [ann, bob], policy="third-look").curated["val"]  # a new policy recomputes
    assert c.summary.needs_look == 1 and c.summary.policy == "third-look"
    assert records(drafted, folder="curated")[pid]["curation_status"] == "pending"
    assert curation_summary(drafted, "val").needs_look == 1  # the stored policy holds
    cy = decision_file(res.folder, tmp_path / "cy.json", "cy", {pid: {"decision": "accept", "at": 3}})
    c = import_decisions(drafted, [cy]).curated["val"]
    assert c.summary.needs_look == 0 and records(drafted, folder="curated")[pid]["curation_status"] == "accepted"


def _body(folder: Path) -> dict:
    m = export_manifest(folder)
    s = m["sheets"][0]
    pid = s["patches"][0]
    return {"format": "geopixeld-curation-decisions", "version": 1, "export_id": m["export_id"], "sheet_id": s["sheet_id"],
            "sheet_file": s["file"], "split": "val", "curator": "ann", "saved_at": "2026-11-27T09:00:00Z",
            "patches": [{"patch_id": pid, "content_sha256": m["patches"][pid]["content_sha256"], "decision": "accept",
                         "note": "", "at": "2026-11-27T09:00:00Z", "phrases": []}]}


def _edit(body, recs, text_of):
    p = body["patches"][0]
    tag = recs[p["patch_id"]]["phrases"][0]["tag"]
    p["phrases"] = [{"tag": tag, "decision": "edit", "text": text_of(tag), "at": "2026-11-27T09:00:00Z"}]


BAD = {
    "malformed JSON": (lambda b, r: "{not json", "malformed JSON"),
    "duplicate key": (lambda b, r: json.dumps(b)[:-1] + ', "curator": "eve"}', "duplicate key"),
    "unknown field": (lambda b, r: b.update(extra=1), "extra"),
    "no curator": (lambda b, r: b.update(curator="  "), "curator"),
    "unknown decision": (lambda b, r: b["patches"][0].update(decision="maybe"), "decision"),
    "unknown export": (lambda b, r: b.update(export_id="0123456789abcdef"), "is not in"),
    "split outside": (lambda b, r: b.update(split="../val"), "split"),
    "sheet of another export": (lambda b, r: b.update(sheet_id="0123456789abcdef-00000"), "not a sheet"),
    "patch not on the sheet": (lambda b, r: b["patches"][0].update(patch_id="P0999_0_800_0_800"), "not on sheet"),
    "content hash": (lambda b, r: b["patches"][0].update(content_sha256="0" * 64), "content hash differs"),
    "phrase not in patch": (lambda b, r: b["patches"][0].update(
        phrases=[{"tag": "ship-77", "decision": "accept", "at": "2026-11-27T09:00:00Z"}]), "not a phrase"),
    "edit drops its tag": (lambda b, r: _edit(b, r, lambda t: "Nothing grounded here."), "must stay"),
    "edit invents a tag": (lambda b, r: _edit(b, r, lambda t: f"The <p> {t} </p> [SEG] near <p> ship-77 </p> [SEG]."),
                           "not one of"),
    "edit breaks markup": (lambda b, r: _edit(b, r, lambda t: f"The <p> {t} </p> [SEG] and </p>."), "unbalanced"),
    "naive time": (lambda b, r: b.update(saved_at="2026-11-27T09:00:00"), "saved_at"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_import_refuses_bad_decision_files_and_writes_nothing(drafted, tmp_path, case):
    res = _export(drafted)
    body, recs = _body(res.folder), records(drafted)
    change, message = BAD[case]
    text = change(body, recs)
    path = tmp_path / "bad.json"
    path.write_text(text if isinstance(text, str) else json.dumps(body))
    with pytest.raises(DecisionFileError, match=re.escape(message)) as err:
        import_decisions(drafted, [path])
    assert str(path) in str(err.value)
    assert not (drafted / "val/curation/ledger").exists() and not (drafted / "val/curated").exists()


def test_import_refuses_oversized_files_and_redrafted_records(drafted, tmp_path):
    res = _export(drafted)
    path = tmp_path / "d.json"
    path.write_text(json.dumps(_body(res.folder)))
    with pytest.raises(DecisionFileError, match="over the limit"):
        import_decisions(drafted, [path], max_bytes=100)
    rewrite_records(drafted, lambda r: r.update(holistic="Redrafted."))
    with pytest.raises(DecisionFileError, match="drafted again"):
        import_decisions(drafted, [path])
