"""The typed GCG record and its one row codec: round trips, version-2 rows still read, the shared phrase fields."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.contracts import dataset_schema
from pipeline.contracts.gcg_schema import (GCG_SCHEMA, GCG_SCHEMA_VERSION, GEOREF_COLUMNS, PHRASE_FIELDS, Dropped,
                                           Failure, GCGRecord, Phrase, Prompt, Provenance, TaggedText,
                                           records_from_table, records_to_table)
from pipeline.contracts.plan_schema import PLAN_SCHEMA
from pipeline.contracts.records import Georef, Window

DATA = Path(__file__).parent / "data"  # made by make_gcg_v2.py with the schema-2 code
RLE = {"size": [4, 4], "counts": "04<"}


def _record() -> GCGRecord:
    return GCGRecord(
        "P0003_0_800_347_1147", "val", "patches/P0003_0_800_347_1147.png", 800, 800, source_image="P0003",
        window=Window(347, 0, 1147, 800), georef=Georef("EPSG:32633 WKT", (0.5, 0.0, 10.0, 0.0, -0.5, 20.0)),
        description="A view. The <p> plane-1 </p> [SEG] and the <p> small vehicles-1 </p> [SEG].",
        phrases=[Phrase("plane-1", 16, 23, "instance", "plane", [7], RLE),
                 Phrase("small vehicles-1", 45, 61, "group", "small vehicle", [3, 4, 5], RLE)],
        holistic="A view.", instance_texts=[TaggedText("plane-1", "The plane-1 is large.")],
        group_texts=[TaggedText("small vehicles-1", "Three cars.")], dropped=[Dropped("ship-1", "no valid instance sentence")],
        failures=[Failure("instance", "ship-1", "not JSON", "{")], status="ok",
        provenance=Provenance("lmm", "2", "tiny", '{"seed": 0}', [TaggedText("holistic", "ab" * 32)],
                              [Prompt("holistic", "", "Describe the image.", "cd" * 32)], "f" * 16),
    )


def test_a_record_round_trips_through_its_row_and_parquet(tmp_path):
    rec = _record()
    pq.write_table(records_to_table([rec]), tmp_path / "r.parquet")
    table = pq.read_table(tmp_path / "r.parquet")
    assert table.schema.metadata[b"geopixeld.schema_version"] == str(GCG_SCHEMA_VERSION).encode()
    assert records_from_table(table) == [rec]
    row = table.to_pylist()[0]
    assert row["window"] == [347, 0, 1147, 800] and row["crs"] == "EPSG:32633 WKT"
    assert [p["tier"] for p in row["phrases"]] == ["instance", "group"]


def test_the_georeference_has_the_plan_schemas_types():
    for name in GEOREF_COLUMNS:
        assert GCG_SCHEMA.field(name).type == PLAN_SCHEMA.field(name).type


def test_a_record_without_georeference_reads_back_without_one():
    rec = GCGRecord("P1", "val", None, 20, 20, provenance=Provenance("geopixel"))
    back = GCGRecord.from_row(records_to_table([rec]).to_pylist()[0])
    assert back == rec and back.georef is None and back.window is None and back.status == "failed"


def test_version_2_rows_are_read_and_written_back_with_only_the_later_versions_changes():
    table = pq.read_table(DATA / "gcg_v2_records.parquet")
    assert table.schema.metadata[b"geopixeld.schema_version"] == b"2" and table.num_rows
    for row, rec in zip(table.to_pylist(), records_from_table(table)):
        assert [p.tier for p in rec.phrases] == [p["kind"] for p in row["phrases"]]
        assert {p.tier for p in rec.phrases} == {"instance", "group"}
        assert rec.source_image is None and rec.window is None and rec.georef is None
        new = rec.to_row()
        assert new["schema_version"] == GCG_SCHEMA_VERSION == 4 and all(new[k] is None for k in GEOREF_COLUMNS)
        assert rec.checks is None and new["checks"] is None  # not verified: not "every check passed"
        as_v2 = {k: v for k, v in new.items() if k not in (*GEOREF_COLUMNS, "checks")}
        as_v2["phrases"] = [{**{k: v for k, v in p.items() if k != "tier"}, "kind": p["tier"]} for p in new["phrases"]]
        assert {**as_v2, "schema_version": 2} == row  # nothing else changed
    pa.Table.from_pylist([r.to_row() for r in records_from_table(table)], schema=GCG_SCHEMA)  # writable as the current version


def test_checks_round_trip_and_none_differs_from_every_check_passed():
    from pipeline.contracts.gcg_schema import Check

    for checks in (None, [], [Check("instance", "plane-1", "category", "says 'ship'; the plan says plane")]):
        rec = _record()
        rec.checks = checks
        back = GCGRecord.from_row(records_to_table([rec]).to_pylist()[0])
        assert back.checks == checks and (back.checks is None) == (checks is None)


def test_unknown_versions_are_refused():
    row = _record().to_row()
    for version in (0, GCG_SCHEMA_VERSION + 1):
        with pytest.raises(ValueError, match=f"schema version {version}"):
            GCGRecord.from_row({**row, "schema_version": version})


def test_for_plan_takes_the_plans_identity_and_georeference():
    from pipeline.contracts.plan_schema import row_to_plan

    plan = row_to_plan(pq.read_table(DATA / "gcg_v2_plans.parquet").to_pylist()[0])
    rec = GCGRecord.for_plan(plan, Provenance("template", "1"), status="ok")
    assert (rec.patch_id, rec.split, rec.image_path, rec.width, rec.height) == (
        plan.patch_id, plan.split, plan.image_path, plan.width, plan.height)
    assert rec.source_image == plan.source_image and rec.window == plan.window and rec.georef == plan.georef
    assert rec.provenance.plan_config_hash == plan.config_hash and rec.status == "ok"


def test_the_dataset_phrase_and_mask_are_built_from_the_gcg_phrase_fields():
    ref, mask = dataset_schema.PHRASE_REF, dataset_schema.MASK
    for struct, names in ((ref, ("tag", "start", "end", "tier")), (mask, ("tier", "category", "object_ids", "rle"))):
        for n in names:
            assert struct.field(n).equals(PHRASE_FIELDS[n])
    assert [f.name for f in ref] == ["tag", "start", "end", "tier", "mask_id"]
    assert pa.struct(list(PHRASE_FIELDS.values())) == GCG_SCHEMA.field("phrases").type.value_type
