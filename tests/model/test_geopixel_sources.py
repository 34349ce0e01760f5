"""Where a split's records are and how each layout reads: one rule for the trainer, predict and eval (curated
records win once curation has finished them), one reader per format, GCG schema 2 rows still read."""

from __future__ import annotations

import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model.records import DataError
from model.sources import NotFound, RecordShards, locate, open_source
from pipeline.contracts import layout
from pipeline.contracts.shards import read_manifest, write_manifest


@pytest.fixture
def build(gp_demo, tmp_path):
    """A build root (OUT/val/{patches,records}) the test may add curated shards to."""
    out = tmp_path / "build"
    shutil.copytree(gp_demo / "out" / "val", out / "val")
    return out


def _curate(out, rows: int, complete: bool):
    """OUT/val/curated: the first `rows` records, accepted; finished or not."""
    cur = layout.curated_dir(out, "val")
    cur.mkdir()
    t = pq.read_table(layout.records_dir(out, "val")).slice(0, rows)
    t = t.set_column(t.schema.get_field_index("curation_status"), "curation_status",
                     pa.array(["accepted"] * rows, pa.string()))
    pq.write_table(t, cur / "records-00000.parquet")
    write_manifest(cur, {"kind": "gcg", "shards": {}, "complete": complete})


def _trainer_patches(out):
    return {p.patch_id for p in _all(open_source(out, "val"))}


def _all(src):
    return [src.patch(e.shard, e.row) for e in src.scan()]


def _every_command(out):
    """(trainer, predict, eval) patch ids for the build root with --split val."""
    from model.eval.readers import load
    from model.predict import find_targets

    return (_trainer_patches(out), {t.patch_id for t in find_targets(out, "val")},
            set(load([out], "ground truth", "val").images))


def test_curated_records_win_once_finished_in_every_command(build):
    drafted = _trainer_patches(build)
    assert len(drafted) == 4 and _every_command(build) == (drafted,) * 3
    _curate(build, 2, complete=False)  # curation under way: the drafted records still count
    assert _every_command(build) == (drafted,) * 3
    shutil.rmtree(layout.curated_dir(build, "val"))
    _curate(build, 2, complete=True)
    curated = _trainer_patches(build)
    assert len(curated) == 2 and curated < drafted
    assert _every_command(build) == (curated,) * 3
    assert all(p.curation_status == "accepted" for p in _all(open_source(build, "val")))


def test_split_folder_build_root_and_demo_folder_are_the_same_records(gp_demo):
    want = locate(gp_demo / "out" / "train" / "records", None).files
    for path, split in ((gp_demo, "train"), (gp_demo / "out", "train"), (gp_demo / "out" / "train", None)):
        loc = locate(path, split)
        assert loc.files == want and loc.root == gp_demo / "out" / "train"


def test_unfinished_records_are_refused(build):
    m = read_manifest(layout.records_dir(build, "val"))
    write_manifest(layout.records_dir(build, "val"), dict(m, complete=False))
    with pytest.raises(DataError, match="unfinished"):
        open_source(build, "val")


def test_unknown_folder_says_where_it_looked(gp_demo, tmp_path):
    with pytest.raises(NotFound, match=r"no 'train' records under .*looked for \*\.parquet"):
        open_source(tmp_path, "train")
    shutil.copytree(gp_demo / "out" / "train" / "patches", tmp_path / "train" / "patches")  # images, no records
    with pytest.raises(NotFound):
        open_source(tmp_path, "train")
    with pytest.raises(NotFound, match="no such file"):
        open_source(tmp_path / "nope", "train")


def test_an_image_path_outside_the_split_folder_is_refused(build):
    (p,) = [x for x in _all(open_source(build, "val"))][:1]
    from dataclasses import replace

    assert p.image.is_file()
    with pytest.raises(DataError, match=r"row 0 \(patch .*\): .*outside"):
        replace(p, image_path="../../etc/passwd").image


def test_gcg_schema_2_rows_read_their_phrase_kind_as_tier(build, tmp_path):
    """Records drafted before schema 3 (phrases' `kind`, no georeference) train and score as before."""
    from pipeline.contracts import gcg_schema

    v3 = pq.read_table(layout.records_dir(build, "val"))
    phrase_v2 = pa.struct([("kind", f.type) if f.name == "tier" else f for f in gcg_schema.PHRASE])
    fields = [pa.field("phrases", pa.list_(phrase_v2)) if f.name == "phrases" else f for f in v3.schema
              if f.name not in gcg_schema.GEOREF_COLUMNS]
    rows = []
    for r in v3.to_pylist():
        r = {k: v for k, v in r.items() if k not in gcg_schema.GEOREF_COLUMNS}
        r["schema_version"] = 2
        r["phrases"] = [{("kind" if k == "tier" else k): v for k, v in p.items()} for p in r["phrases"]]
        rows.append(r)
    folder = tmp_path / "val" / "records"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema(fields)), folder / "records-00000.parquet")
    shutil.copytree(build / "val" / "patches", tmp_path / "val" / "patches")
    old, new = _all(open_source(tmp_path, "val")), _all(open_source(build, "val"))
    assert [p.phrases for p in old] == [p.phrases for p in new]
    assert {ph.tier for p in old for ph in p.phrases} == {"instance", "group"}
    assert isinstance(open_source(tmp_path, "val"), RecordShards)
