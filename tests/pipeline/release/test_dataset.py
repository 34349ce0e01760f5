"""The released dataset: Parquet shards + manifest + card, read back with pandas, pyarrow, DuckDB and HF datasets."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.contracts import masks
from pipeline.contracts.gcg_schema import GCG_SCHEMA, GEOREF_COLUMNS, GCGRecord, Phrase, Provenance
from pipeline.contracts.records import Georef, Window
from pipeline.release.dataset import DatasetSettings, RecordsNotReady, dataset_row, verify, write_dataset
from pipeline.contracts.paper import PAPER, PAPER_PER_PATCH
from pipeline.contracts.dataset_schema import DATASET_SCHEMA, schema_reference
from pipeline.drafting.stage import run_draft
from pipeline.planning.stage import run_plan
from pipeline.contracts.shards import PlansNotReady, read_manifest, write_manifest, write_table
from pipeline.synthetic.tiny_build import plan_config

ROOT = Path(__file__).resolve().parents[3]
NO_CURATION = DatasetSettings(require_curation=[])


@pytest.fixture(scope="module")
def drafted(tiny_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "out"
    for split in ("train", "val"):
        run_plan(plan_config(tiny_root, out, source={"split": split}, output={"shard_images": 2}), progress=False)
        run_draft(out, split, progress=False)
    return out


@pytest.fixture
def built(drafted):
    summary = write_dataset(drafted, ["train", "val"], NO_CURATION)
    return drafted, summary


def test_rows_read_back_equal_to_the_records_with_pandas_pyarrow_and_duckdb(built):
    out, summary = built
    folder = summary.folder
    recs = pd.read_parquet(out / "val/records")
    df = pd.read_parquet(folder / "data/val")
    assert len(df) == (recs["status"] == "ok").sum() > 0 and summary.splits["val"].rows == len(df)
    assert pq.read_schema(next((folder / "data/val").glob("*.parquet"))).equals(DATASET_SCHEMA, check_metadata=False)
    by_id = {r["patch_id"]: r for r in recs.to_dict("records")}
    for row in df.to_dict("records"):
        rec = by_id[row["patch_id"]]
        assert row["description"] == rec["description"] and "<p>" not in row["caption"]
        assert len(row["phrases"]) == len(row["masks"]) == row["description"].count("[SEG]")
        for p, m in zip(row["phrases"], row["masks"]):
            assert row["description"][p["start"]:p["end"]] == p["tag"] and m["mask_id"] == p["mask_id"]
            mask = masks.decode(m["rle"])
            assert mask.shape == (row["height"], row["width"]) and int(mask.sum()) == m["area"] > 0
            ys, xs = np.nonzero(mask)
            assert list(m["bbox"]) == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert (folder / row["image"]["path"]).is_file() and row["image"]["bytes"] is None
        assert list(row["window"]) and row["source_image"]
    duckdb = pytest.importorskip("duckdb")
    got = duckdb.sql(f"select split, count(*), sum(len(phrases)) from '{folder}/data/*/*.parquet' group by split "
                     "order by split").fetchall()
    assert got == [(s, summary.splits[s].rows, summary.splits[s].stats["phrases"]) for s in ("train", "val")]


def test_hugging_face_datasets_loads_the_folder_and_its_card(built, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(built[1].folder.parent / "hf"))
    datasets = pytest.importorskip("datasets")
    folder = built[1].folder
    by_card = datasets.load_dataset(str(folder))  # reads the card's `configs`
    assert set(by_card) == {"train", "val"} and by_card["val"].num_rows == built[1].splits["val"].rows
    by_files = datasets.load_dataset("parquet", data_files={"val": str(folder / "data/val/*.parquet")})
    assert by_files["val"][0]["patch_id"] == by_card["val"][0]["patch_id"]
    first = by_files["val"][0]
    assert first["masks"][0]["rle"]["counts"] == by_card["val"][0]["masks"][0]["rle"]["counts"]
    assert len(first["masks"]) == first["description"].count("[SEG]")


def test_the_cards_recipe_loads_the_current_rows_after_a_rebuild(drafted, tmp_path, monkeypatch):
    """`datasets` caches a folder by its card's config, not its files: a rebuild with other rows must load those."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "out"
    shutil.copytree(drafted, out)
    folder = write_dataset(out, ["train", "val"], NO_CURATION).folder
    before = datasets.load_dataset(str(folder))["val"]["patch_id"]
    rec_dir = out / "val/records"
    m = read_manifest(rec_dir)
    for name in sorted(m["shards"]):  # every val record but one fails: the rebuild releases other rows
        table = pq.read_table(rec_dir / name)
        rows = table.to_pylist()
        for r in rows:
            r["status"] = "failed"
        m["shards"][name]["sha256"] = write_table(table.from_pylist(rows, schema=table.schema), rec_dir / name)
    first = sorted(m["shards"])[0]
    table = pq.read_table(rec_dir / first)
    rows = table.to_pylist()
    kept = next(r for r in rows if r["phrases"])
    kept["status"] = "ok"
    m["shards"][first]["sha256"] = write_table(table.from_pylist(rows, schema=table.schema), rec_dir / first)
    write_manifest(rec_dir, m)
    write_dataset(out, ["train", "val"], NO_CURATION)
    after = datasets.load_dataset(str(folder))["val"]["patch_id"]
    assert len(before) > 1 and after == [kept["patch_id"]]
    assert "geopixeld rows" in (folder / "README.md").read_text()


def test_geopixelds_test_split_is_planned_from_isaids_val_and_the_card_names_it(tiny_root, tmp_path):
    out = tmp_path / "out"
    cfg = plan_config(tiny_root, out, "test")
    assert cfg.source.folder == "val" and not (tiny_root / "test").exists()
    run_plan(cfg, progress=False)
    run_draft(out, "test", progress=False)
    summary = write_dataset(out, ["test"], NO_CURATION)
    df = pd.read_parquet(summary.folder / "data/test")
    assert len(df) > 0 and set(df["split"]) == {"test"} and not (out / "val").exists()
    card = (summary.folder / "README.md").read_text()
    assert "Splits: `test` from `val`" in card and "### test (from the source's `val` split)" in card
    assert f"| mean description length (characters; paper: GeoPixelD test) | " \
           f"{round(df['description'].str.len().mean()):,} | {PAPER['test']['caption_chars']} |" in card
    held = write_dataset(out, ["test"], DatasetSettings())  # the default gate: test waits for its curators
    assert not held.splits["test"].released and "(from the source's `val` split)" in (held.folder / "README.md").read_text()


def test_manifest_checksums_match_and_a_rerun_rewrites_nothing(built):
    out, summary = built
    folder = summary.folder
    assert verify(folder) == []
    m = read_manifest(folder)
    assert m["complete"] and m["rows"] == sum(s.rows for s in summary.splits.values())
    before = {p: p.stat().st_mtime_ns for p in folder.glob("data/*/*.parquet")}
    again = write_dataset(out, ["train", "val"], NO_CURATION)
    assert all(s.shards_written == 0 for s in again.splits.values())
    assert before == {p: p.stat().st_mtime_ns for p in folder.glob("data/*/*.parquet")}
    victim = sorted(before)[0]
    victim.write_bytes(victim.read_bytes()[:-10])
    assert verify(folder) == [f"{victim}: checksum differs from the manifest"]
    write_dataset(out, ["train", "val"], NO_CURATION)  # a damaged shard is rewritten
    assert verify(folder) == []


def test_changed_records_rewrite_only_their_shard(built):
    out, summary = built
    rec_dir = out / "val/records"
    m = read_manifest(rec_dir)
    name = sorted(m["shards"])[0]
    table = pq.read_table(rec_dir / name)
    rows = table.to_pylist()
    rows[0]["status"] = "failed"
    m["shards"][name]["sha256"] = write_table(table.from_pylist(rows, schema=table.schema), rec_dir / name)
    write_manifest(rec_dir, m)
    again = write_dataset(out, ["train", "val"], NO_CURATION)
    assert again.splits["val"].shards_written == 1 and again.splits["train"].shards_written == 0
    assert again.splits["val"].rows == summary.splits["val"].rows - 1
    assert again.splits["val"].stats["failed"] == 1


def test_the_release_holds_exactly_the_files_its_rows_and_index_name(built):
    """A record no longer released takes its image and per-patch files with it; a stray file in the release's own
    folders goes too: one dataset image per row, one per-patch JSON and PNG per GeoPixelD index entry."""
    out, summary = built
    folder = summary.folder
    (folder / "images/val/stray.png").write_bytes(b"x")
    (folder / "geopixeld/val/stray.json").write_text("{}")
    rec_dir = out / "val/records"
    m = read_manifest(rec_dir)
    name = sorted(m["shards"])[0]
    table = pq.read_table(rec_dir / name)
    rows = table.to_pylist()
    gone = next(r for r in rows if r["status"] == "ok" and r["image_path"])
    gone["status"] = "failed"
    m["shards"][name]["sha256"] = write_table(table.from_pylist(rows, schema=table.schema), rec_dir / name)
    write_manifest(rec_dir, m)
    write_dataset(out, ["train", "val"], NO_CURATION)
    named = set(pd.read_parquet(folder / "data/val")["image"].map(lambda i: i["path"]))
    on_disk = {f"images/val/{p.name}" for p in (folder / "images/val").iterdir()}
    assert on_disk == named and f"images/val/{gone['patch_id']}.png" not in on_disk
    index = json.loads((folder / "geopixeld/GeoPixelD_val.json").read_text())
    stems = {Path(e["polygons"]).stem for e in index}
    assert {p.stem for p in (folder / "geopixeld/val").glob("*.json")} == stems and gone["patch_id"] not in stems
    assert {p.stem for p in (folder / "geopixeld/val").glob("*.png")} <= stems
    assert not (folder / "images/val/stray.png").exists() and not (folder / "geopixeld/val/stray.json").exists()


def test_card_states_the_statistics_beside_the_papers(built):
    out, summary = built
    card = (summary.folder / "README.md").read_text()
    s = summary.splits["train"].stats
    df = pd.read_parquet(summary.folder / "data/train")
    assert s["phrases"] == sum(len(p) for p in df["phrases"]) and s["patches"] == len(df)
    n = len(df)
    instance = sum(p["tier"] == "instance" for ps in df["phrases"] for p in ps)
    group = sum(p["tier"] == "group" for ps in df["phrases"] for p in ps)
    assert 0 < instance < s["phrases"] and instance + group == s["phrases"]
    assert f"| instance phrases per patch | {instance / n:.2f} | {PAPER_PER_PATCH['instance']:.2f} |" in card
    assert f"| group phrases per patch | {group / n:.2f} | {PAPER_PER_PATCH['group']:.2f} |" in card
    members = sum(len(m["object_ids"]) for ms in df["masks"] for m in ms if m["tier"] == "group")
    assert f"| objects per group phrase | {members / group:.2f} | 33.13 |" in card
    assert (f"| mean description length (characters; paper: GeoPixelD train) | "
            f"{round(df['description'].str.len().mean()):,} | {PAPER['train']['caption_chars']} |") in card
    assert f"{s['phrases']:,} grounded phrases" in card
    assert "`train` from `train`, `val` from `val`" in card  # which source split each release split comes from
    assert "path: data/val/*.parquet" in card and "Drafted by: template" in card
    index = json.loads((summary.folder / "geopixeld/GeoPixelD_val.json").read_text())
    assert len(index) == summary.splits["val"].rows


def test_embedded_images_carry_the_png_bytes(drafted, tmp_path):
    s = write_dataset(drafted, ["val"], DatasetSettings(require_curation=[], folder=str(tmp_path / "emb"), embed_images=True,
                                                        export_geopixeld=False))
    row = pq.read_table(next((s.folder / "data/val").glob("*.parquet"))).slice(0, 1).to_pylist()[0]
    assert row["image"]["bytes"] == (s.folder / row["image"]["path"]).read_bytes() and row["image"]["bytes"][:4] == b"\x89PNG"


def test_an_output_root_given_relative_to_the_working_folder_is_released(drafted, tmp_path, monkeypatch):
    # `make demo` passes demo/out: the layout resolves its folders, the release names them relative to the root
    shutil.copytree(drafted, tmp_path / "rel" / "out")
    monkeypatch.chdir(tmp_path / "rel")
    s = write_dataset(Path("out"), ["train"], NO_CURATION)
    manifest = read_manifest(Path("out") / "dataset")
    sources = [e["source"]["records"] for e in manifest["splits"]["train"]["shards"].values()]
    assert s.splits["train"].rows > 0 and sources and all(x.startswith("train/records/") for x in sources)


def test_dataset_row_keeps_a_groups_union_its_members_and_the_records_georeference():
    rle = masks.crop_to_rle(np.ones((3, 4), bool), 2, 1, 10, 10)
    rec = GCGRecord("P1_0_10_0_10", "val", "patches/P1_0_10_0_10.png", 10, 10, source_image="P1",
                    window=Window(0, 0, 10, 10), georef=Georef("WKT", (1.0, 0.0, 5.0, 0.0, -1.0, 9.0)),
                    description="Three <p> small vehicles-1 </p> [SEG] parked.",
                    phrases=[Phrase("small vehicles-1", 10, 26, "group", "small vehicle", [4, 5, 6], rle)],
                    holistic="h", status="ok", provenance=Provenance("lmm"))
    row = dataset_row(rec, "x.png", None)
    assert row["caption"] == "Three small vehicles parked."
    assert (row["source_image"], row["window"], row["crs"], row["transform"]) == (
        "P1", [0, 0, 10, 10], "WKT", [1.0, 0.0, 5.0, 0.0, -1.0, 9.0])
    assert row["phrases"] == [{"tag": "small vehicles-1", "start": 10, "end": 26, "tier": "group", "mask_id": 0}]
    assert row["masks"][0] | {"rle": None} == {"mask_id": 0, "tier": "group", "category": "small vehicle",
                                             "object_ids": [4, 5, 6], "bbox": [2.0, 1.0, 4.0, 3.0], "area": 12, "rle": None}
    pa.Table.from_pylist([row], schema=DATASET_SCHEMA)


def test_the_release_takes_the_georeference_from_the_records_not_the_plans(drafted, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(drafted, out)
    plans = {r["patch_id"]: r for r in pd.read_parquet(out / "val/plans").to_dict("records")}
    for shard in (out / "val/plans").glob("plans-*.parquet"):
        shard.unlink()  # the release must not need them
    s = write_dataset(out, ["val"], DatasetSettings(require_curation=[], export_geopixeld=False))
    rows = pq.read_table(s.folder / "data/val").to_pylist()
    assert rows and all(r["source_image"] == plans[r["patch_id"]]["source_image"]
                        and r["window"] == list(plans[r["patch_id"]]["window"]) for r in rows)


def test_a_record_of_schema_2_is_refused_with_what_to_do(drafted, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(drafted, out)
    rec_dir = out / "val/records"
    m = read_manifest(rec_dir)
    name = sorted(m["shards"])[0]
    rows = pq.read_table(rec_dir / name).to_pylist()
    v2 = [{**{k: v for k, v in r.items() if k not in GEOREF_COLUMNS}, "schema_version": 2,
           "phrases": [{**p, "kind": p["tier"]} for p in r["phrases"]]} for r in rows]
    v2_schema = pa.schema([f for f in GCG_SCHEMA if f.name not in GEOREF_COLUMNS])
    v2_schema = v2_schema.set(v2_schema.get_field_index("phrases"), pa.field("phrases", pa.list_(pa.struct(
        [pa.field("kind", pa.string()) if f.name == "tier" else f for f in GCG_SCHEMA.field("phrases").type.value_type]))))
    m["shards"][name]["sha256"] = write_table(pa.Table.from_pylist(v2, schema=v2_schema), rec_dir / name)
    write_manifest(rec_dir, m)
    with pytest.raises(RecordsNotReady, match="no georeference.*draft split 'val' again"):
        write_dataset(out, ["val"], DatasetSettings(require_curation=[], export_geopixeld=False, folder=str(tmp_path / "ds")))


def test_docs_match_the_schema():
    doc = (ROOT / "docs/dataset-schema.md").read_text()
    assert schema_reference() in doc, "docs/dataset-schema.md is stale: paste pipeline.contracts.dataset_schema.schema_reference()"


def test_a_read_only_output_is_named(drafted, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a read-only tmpfs")
    import subprocess

    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)]).returncode:
        pytest.skip("mount (tmpfs) is not permitted here")
    try:
        with pytest.raises(OSError, match=str(ro)):
            write_dataset(drafted, ["val"], DatasetSettings(require_curation=[], folder=str(ro / "dataset")))
    finally:
        subprocess.run(["umount", str(ro)])


def test_a_split_that_needs_curation_is_held_back_until_every_patch_is_decided(drafted, tmp_path):
    import shutil

    from pipeline.curation import import_decisions, stage_for_build
    from tests.pipeline.curation.curation_helpers import decision_file, export_manifest

    out = tmp_path / "out"
    shutil.copytree(drafted, out)
    settings = DatasetSettings(require_curation=["val"])
    held = write_dataset(out, ["train", "val"], settings)
    assert not held.splits["val"].released and "0 of" in held.splits["val"].held_back
    assert not list((held.folder / "data").glob("val/*.parquet")) and held.splits["train"].rows > 0
    card = (held.folder / "README.md").read_text()
    assert "Not released yet (held back: curation required" in card and "path: data/val/" not in card
    staged = stage_for_build(out, "val")
    folder = Path(staged["sheets in"])
    pids = export_manifest(folder)["sheets"][0]["patches"]
    first = pd.read_parquet(out / "val/records").set_index("patch_id").loc[pids[0]]
    tag = first["phrases"][0]["tag"]
    f = decision_file(folder, tmp_path / "d.json", "ann", {p: {"decision": "reject" if p == pids[1] else "accept"}
                                                            for p in pids if p != pids[0]}
                      | {pids[0]: {"decision": "accept", "phrases": [(tag, "reject", None, 2)]}})
    import_decisions(out, [f])
    done = write_dataset(out, ["train", "val"], settings)
    df = pd.read_parquet(done.folder / "data/val")
    assert done.splits["val"].released and len(df) == len(pids) - 1 and pids[1] not in set(df["patch_id"])
    assert tag not in {p["tag"] for p in df.set_index("patch_id").loc[pids[0], "phrases"]}
    card = (done.folder / "README.md").read_text()
    assert "Curated phrases: " in card and " 1 rejected." in card and "path: data/val/*.parquet" in card


# --- every image a record names is checked before it is released ----------------------------------------

def _copy_of(drafted, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(drafted, out)
    shutil.rmtree(out / "dataset", ignore_errors=True)
    return out


def _a_released_image(out, split="val"):
    recs = pd.read_parquet(out / split / "records")
    r = recs[(recs["status"] == "ok") & recs["image_path"].notna()].iloc[0]
    return r["patch_id"], out / split / r["image_path"]


def test_a_missing_patch_image_stops_the_release_with_what_to_run_and_a_replan_rebuilds_it(drafted, tiny_root, tmp_path):
    out = _copy_of(drafted, tmp_path)
    patch_id, png = _a_released_image(out)
    good = png.read_bytes()
    png.unlink()
    settings = DatasetSettings(require_curation=[], export_geopixeld=False)
    with pytest.raises(PlansNotReady) as err:
        write_dataset(out, ["val"], settings)
    msg = str(err.value)
    assert msg.startswith(f"{png}: missing; record {patch_id!r} of ") and "`geopixeld plan` for split 'val'" in msg
    assert "\n" not in msg and not (out / "dataset/images/val" / png.name).exists()
    assert not read_manifest(out / "dataset")["complete"]
    replan = run_plan(plan_config(tiny_root, out, source={"split": "val"}, output={"shard_images": 2}), progress=False)
    assert replan.replanned and png.read_bytes() == good
    s = write_dataset(out, ["val"], settings)
    assert s.splits["val"].rows > 0 and (s.folder / "images/val" / png.name).read_bytes() == good


def test_a_damaged_patch_image_of_the_same_size_is_refused(drafted, tmp_path):
    out = _copy_of(drafted, tmp_path)
    _, png = _a_released_image(out)
    data = bytearray(png.read_bytes())
    data[-20] ^= 0xFF
    png.write_bytes(bytes(data))
    with pytest.raises(PlansNotReady, match="damaged"):
        write_dataset(out, ["val"], DatasetSettings(require_curation=[], export_geopixeld=False))


def test_the_geopixeld_export_refuses_a_missing_png_before_writing_anything(drafted, tmp_path):
    from pipeline.release.geopixeld import export_split

    out = _copy_of(drafted, tmp_path)
    patch_id, png = _a_released_image(out)
    png.unlink()
    with pytest.raises(PlansNotReady, match=f"{png}: missing; record {patch_id!r}"):
        export_split(out, "val", tmp_path / "gpd")
    assert not (tmp_path / "gpd").exists()
