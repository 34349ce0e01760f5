"""End-to-end planning runs on the tiny synthetic iSAID set, read back with pandas and pyarrow."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from annotations.marks import mark_box
from pipeline.contracts import masks
from pipeline.contracts.imageio import read_image
from pipeline.contracts.plan_schema import PLAN_SCHEMA, PLAN_SCHEMA_VERSION, row_to_plan
from pipeline.contracts.shards import ManifestMismatch
from pipeline.planning.stage import run_plan
from pipeline.synthetic.tiny_build import plan_config


def _table(out, split="val"):
    return ds.dataset(out / split / "plans", format="parquet").to_table().sort_by("patch_id")


def test_plan_reads_back_with_pandas_and_pyarrow(tiny_root, tmp_path):
    out = tmp_path / "out"
    summary = run_plan(plan_config(tiny_root, out), progress=False)
    manifest = json.loads((out / "val/plans/_manifest.json").read_text())
    assert manifest["complete"] and manifest["schema_version"] == PLAN_SCHEMA_VERSION
    df = pd.read_parquet(out / "val" / "plans")
    table = _table(out)
    assert len(df) == table.num_rows == manifest["rows"] == summary.stats["kept"] > 0
    for f in PLAN_SCHEMA:
        assert table.schema.field(f.name).type == f.type, f.name
    meta = pq.read_schema(next((out / "val/plans").glob("*.parquet"))).metadata
    assert meta[b"geopixeld.schema_version"] == str(PLAN_SCHEMA_VERSION).encode()
    assert not list((out / "val").rglob("*.tmp"))

    for row in table.to_pylist():
        plan = row_to_plan(row)
        assert plan.split == "val" and plan.objects, plan.patch_id
        img, _ = read_image(out / "val" / plan.image_path)
        assert img.shape[:2] == (plan.height, plan.width)
        ids = {o.object_id for o in plan.objects}
        assert len(ids) == len(plan.objects)
        by_id = {o.object_id: o for o in plan.objects}
        for o in plan.objects:
            m = masks.decode(o.rle)
            assert m.shape == (plan.height, plan.width) and m.sum() == o.area > 0
        # the mark-to-instance map: one mark per instance, centred on the instance's own pixels, no overlaps
        assert sorted(m.number for m in plan.marks) == list(range(1, len(plan.marks) + 1))
        assert {m.object_id for m in plan.marks} == {o.object_id for o in plan.instances}
        boxes = []
        for mk in plan.marks:
            obj = by_id[mk.object_id]
            assert obj.mark == mk.number and masks.decode(obj.rle)[mk.y, mk.x] == 1
            w, h = mark_box(mk.number, plan_config(tiny_root, out).marks)
            boxes.append((mk.x - w // 2, mk.y - h // 2, mk.x - w // 2 + w, mk.y - h // 2 + h))
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (plan.patch_id, a, b)
        assert (plan.som_path is not None) == bool(plan.marks)
        tags = [o.tag for o in plan.instances] + [g.tag for g in plan.groups]
        assert len(tags) == len(set(tags))
        for g in plan.groups:
            assert all(by_id[i].tier == "group" and by_id[i].group_id == g.group_id for i in g.member_ids)
            assert g.count == len(g.member_ids)
            assert masks.area(g.rle) == g.area == int(
                np.logical_or.reduce([masks.decode(by_id[i].rle) for i in g.member_ids]).sum()
            )
        assert all(o.tier in ("instance", "group", "dropped") for o in plan.objects)
        assert all(o.group_id is not None for o in plan.objects if o.tier == "group")


def test_rerun_skips_finished_shards_and_redoes_damaged_ones(tiny_root, tmp_path):
    out = tmp_path / "out"
    cfg = plan_config(tiny_root, out, output={"shard_images": 1})
    first = run_plan(cfg, progress=False)
    assert first.shards_total == 3 and first.shards_skipped == 0
    before = _table(out)
    plans = out / "val" / "plans"
    again = run_plan(cfg, progress=False)
    assert again.shards_skipped == 3 and again.stats == first.stats
    (plans / "plans-00001.parquet").unlink()
    (plans / "plans-00002.parquet").write_bytes(b"half-written")
    third = run_plan(cfg, progress=False)
    assert third.shards_skipped == 1
    assert _table(out).equals(before)


def test_crash_keeps_finished_shards_and_resumes(tiny_root, tmp_path, monkeypatch):
    import pipeline.planning.stage as run_mod

    out = tmp_path / "out"
    cfg = plan_config(tiny_root, out, output={"shard_images": 1})
    real = run_mod.plan_image
    calls = []

    def crash_on_second(img, *a, **k):
        calls.append(img.name)
        if len(calls) == 2:
            raise RuntimeError("simulated crash")
        return real(img, *a, **k)

    monkeypatch.setattr(run_mod, "plan_image", crash_on_second)
    with pytest.raises(RuntimeError):
        run_plan(cfg, progress=False)
    manifest = json.loads((out / "val/plans/_manifest.json").read_text())
    assert not manifest["complete"] and list(manifest["shards"]) == ["plans-00000.parquet"]
    assert sorted(p.name for p in (out / "val/plans").glob("*.parquet")) == ["plans-00000.parquet"]
    assert not list(out.rglob("*.tmp"))
    monkeypatch.setattr(run_mod, "plan_image", real)
    resumed = run_plan(cfg, progress=False)
    assert resumed.shards_skipped == 1
    fresh = tmp_path / "fresh"
    run_plan(plan_config(tiny_root, fresh, output={"shard_images": 1}), progress=False)
    assert _table(out).equals(_table(fresh))


def test_other_config_in_same_output_is_refused(tiny_root, tmp_path):
    out = tmp_path / "out"
    run_plan(plan_config(tiny_root, out), progress=False)
    other = plan_config(tiny_root, out, tiers={"max_marks": 2})
    with pytest.raises(ManifestMismatch, match="--overwrite"):
        run_plan(other, progress=False)
    run_plan(other, progress=False, overwrite=True)
    assert max(len(m) for m in _table(out).column("marks").to_pylist()) <= 2


def test_two_worker_processes_give_the_same_plans(tiny_root, tmp_path):
    run_plan(plan_config(tiny_root, tmp_path / "a", output={"shard_images": 1}), progress=False)
    run_plan(plan_config(tiny_root, tmp_path / "b", output={"shard_images": 1}, workers=2), progress=False)
    assert _table(tmp_path / "a").equals(_table(tmp_path / "b"))


def test_filters_drop_patches(tiny_root, tmp_path):
    base = run_plan(plan_config(tiny_root, tmp_path / "a"), progress=False)
    dense = run_plan(plan_config(tiny_root, tmp_path / "b", filters={"min_objects": 25}), progress=False)
    assert 0 < dense.stats["kept"] < base.stats["kept"]
    assert all(len(r["objects"]) >= 25 for r in _table(tmp_path / "b").to_pylist())
    assert dense.stats["dropped: fewer than 25 objects"] == base.stats["kept"] - dense.stats["kept"]
    none = run_plan(plan_config(tiny_root, tmp_path / "c", tiers={"max_marks": 0}, filters={"require_instance": True}),
                    progress=False)
    assert none.stats["kept"] == 0 and none.stats["dropped: no key instance"] == base.stats["kept"]


def test_plan_without_image_outputs(tiny_root, tmp_path):
    out = tmp_path / "out"
    run_plan(plan_config(tiny_root, out, output={"write_patches": False, "write_som": False}), progress=False)
    rows = _table(out).to_pylist()
    assert rows and all(r["image_path"] is None and r["som_path"] is None for r in rows)
    assert not (out / "val" / "patches").exists()


def test_copy_of_dataset_plans_identically(tiny_root, tmp_path):
    """Plans depend on the data and the config, not on where the dataset lives."""
    copy = tmp_path / "copy"
    shutil.copytree(tiny_root / "val", copy / "val")
    run_plan(plan_config(tiny_root, tmp_path / "a"), progress=False)
    run_plan(plan_config(copy, tmp_path / "b"), progress=False)
    assert _table(tmp_path / "a").drop(["source_path"]).equals(_table(tmp_path / "b").drop(["source_path"]))
