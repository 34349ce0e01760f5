"""The offline template drafter over a planned split: grounded records, resume, and the GeoPixelD export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pipeline.contracts import masks
from pipeline.contracts.shards import PlansNotReady
from pipeline.contracts.config import SourceConfig
from pipeline.contracts.plan_schema import row_to_plan
from pipeline.drafting.stage import run_draft, template_record
from pipeline.ingest import vocabulary_for
from pipeline.release.geopixeld import export_split
from pipeline.contracts.geopixeld_format import polygons_to_mask
from pipeline.contracts.gcg_schema import GCG_SCHEMA, GCG_SCHEMA_VERSION
from pipeline.contracts.grounding import PHRASE_RE
from pipeline.planning.stage import run_plan
from pipeline.synthetic.tiny_build import plan_config


@pytest.fixture
def planned(tiny_root, tmp_path):
    out = tmp_path / "out"
    run_plan(plan_config(tiny_root, out), progress=False)
    return out


def test_every_planned_instance_and_group_is_grounded(planned):
    summary = run_draft(planned, "val", progress=False)
    assert summary.stats["failed"] == 0 and summary.stats["ok"] > 0
    recs = ds.dataset(planned / "val/records", format="parquet").to_table()
    plans = {r["patch_id"]: r for r in ds.dataset(planned / "val/plans", format="parquet").to_table().to_pylist()}
    assert recs.schema.field("phrases").type == GCG_SCHEMA.field("phrases").type
    for r in recs.to_pylist():
        plan = plans[r["patch_id"]]
        tags = [m["text"] for m in PHRASE_RE.finditer(r["description"])]
        planned_tags = [o["tag"] for o in plan["objects"] if o["tier"] == "instance"] + [g["tag"] for g in plan["groups"]]
        assert sorted(tags) == sorted(planned_tags) and r["description"].count("[SEG]") == len(tags)
        assert [r["description"][p["start"] : p["end"]] for p in r["phrases"]] == tags
        groups = {g["tag"]: g for g in plan["groups"]}
        assert all(r[k] == plan[k] for k in ("source_image", "window", "crs", "transform"))  # the plan's georeference
        for p in r["phrases"]:
            if p["tier"] == "group":
                assert p["rle"]["counts"] == groups[p["tag"]]["rle"]["counts"]
                assert p["object_ids"] == list(groups[p["tag"]]["member_ids"])
        assert r["provenance"]["drafter"] == "template" and r["provenance"]["model"] is None
        assert r["provenance"]["prompts"] == [] and r["provenance"]["prompt_hashes"] == []  # no model, no prompt
        assert r["curation_status"] == "pending"
    again = run_draft(planned, "val", progress=False)
    assert again.stats["skipped"] == again.stats["shards"] and again.stats["ok"] == summary.stats["ok"]


def test_records_of_another_schema_version_are_redrafted_not_mixed(planned):
    from pipeline.contracts.gcg_schema import GCG_SCHEMA_VERSION
    from pipeline.contracts.shards import read_manifest, write_manifest

    first = run_draft(planned, "val", progress=False)
    rec_dir = planned / "val/records"
    old = read_manifest(rec_dir)
    old["schema_version"] = GCG_SCHEMA_VERSION - 1  # as left by an earlier release, which wrote no identity key
    old.pop("identity", None)
    write_manifest(rec_dir, old)
    again = run_draft(planned, "val", progress=False)
    assert again.stats["skipped"] == 0 and again.stats["records"] == first.stats["records"]
    assert read_manifest(rec_dir)["schema_version"] == GCG_SCHEMA_VERSION
    for shard in rec_dir.glob("records-*.parquet"):
        assert pq.read_schema(shard).metadata[b"geopixeld.schema_version"] == str(GCG_SCHEMA_VERSION).encode()


def _but_wording(row: dict) -> dict:
    """A record row without the template's wording (its texts, phrase spans and order, drafter version), which
    changes with `template_drafter.VERSION` and not with the schema."""
    out = {k: v for k, v in row.items() if k not in ("holistic", "instance_texts", "group_texts", "description")}
    out["provenance"] = {**row["provenance"], "drafter_version": None}
    out["phrases"] = sorted(({k: v for k, v in p.items() if k not in ("start", "end")} for p in row["phrases"]),
                            key=lambda p: p["tag"])
    return out


def test_template_records_are_the_version_2_rows_with_only_the_version_3_changes():
    """Records drafted now from the plans of tests/pipeline/contracts/data are, column for column, what the
    schema-2 code drafted from them, plus the plan's georeference and `kind` renamed `tier`; only the template's
    wording (drafter version 1 then) differs."""
    from annotations import template_drafter
    from pipeline.contracts.gcg_schema import GCG_SCHEMA_VERSION

    data = Path(__file__).parents[1] / "contracts" / "data"
    plans = {r["patch_id"]: r for r in pq.read_table(data / "gcg_v2_plans.parquet").to_pylist()}
    vocab = vocabulary_for(SourceConfig(root=data))
    for old in pq.read_table(data / "gcg_v2_records.parquet").to_pylist():
        plan = plans[old["patch_id"]]
        new = template_record(row_to_plan(plan), vocab).to_row()
        assert {k: new[k] for k in ("source_image", "window", "crs", "transform")} == {
            k: plan[k] for k in ("source_image", "window", "crs", "transform")}
        expected = {**old, "schema_version": GCG_SCHEMA_VERSION, "checks": None, **{k: plan[k] for k in ("source_image", "window", "crs", "transform")},
                    "phrases": [{**{k: v for k, v in p.items() if k != "kind"}, "tier": p["kind"]} for p in old["phrases"]]}
        assert _but_wording(new) == _but_wording(expected)
        assert new["provenance"]["drafter_version"] == template_drafter.VERSION
        assert [new["description"][p["start"]:p["end"]] for p in new["phrases"]] == [p["tag"] for p in new["phrases"]]


def test_export_reads_back_to_the_record_masks(planned, tmp_path):
    run_draft(planned, "val", progress=False)
    index_path = export_split(planned, "val", tmp_path / "gpd")
    index = json.loads(index_path.read_text())
    recs = {r["patch_id"]: r for r in ds.dataset(planned / "val/records", format="parquet").to_table().to_pylist()}
    assert len(index) == len(recs)
    for entry in index:
        pid = entry["image"].rsplit("/", 1)[1].removesuffix(".png")
        per = json.loads((tmp_path / "gpd" / "val" / f"{pid}.json").read_text())
        assert per["gcg_description"] == entry["conversations"][1]["value"] == recs[pid]["description"]
        assert len(per["polygons"]) == per["gcg_description"].count("[SEG]")
        for polys, phrase in zip(per["polygons"], recs[pid]["phrases"]):
            want = masks.decode(phrase["rle"])
            got = polygons_to_mask(polys, want.shape[0], want.shape[1])
            inter, union = np.logical_and(got, want).sum(), np.logical_or(got, want).sum()
            assert inter / union > 0.95  # outer contours: holes in a mask would be filled
        assert (tmp_path / "gpd" / "val" / f"{pid}.png").exists()


def test_draft_needs_finished_plans(tmp_path):
    with pytest.raises(PlansNotReady, match="geopixeld plan"):
        run_draft(tmp_path, "val", progress=False)
