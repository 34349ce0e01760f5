"""End-to-end planning runs on the tiny synthetic iSAID set, read back with pandas and pyarrow."""

from __future__ import annotations

import hashlib
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
from pipeline.contracts.records import SourceImage
from pipeline.contracts.shards import ManifestMismatch
from pipeline.planning.stage import PatchIdClash, patch_id_clashes, run_plan
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
    from pipeline.planning.planner import NothingPlanned

    with pytest.raises(NothingPlanned, match="no key instance") as exc:  # an empty split is an error, not exit 0
        run_plan(plan_config(tiny_root, tmp_path / "c", tiers={"max_marks": 0}, filters={"require_instance": True}),
                 progress=False)
    none = exc.value.summary
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


# --- identity: patch ids are unique per split ---------------------------------------------------------------

def _with_extra_image(tiny_root, tmp_path, file_name: str, copy_to: str | None = None):
    """A copy of the tiny val set whose annotation file lists one more image entry (id 999) named `file_name`."""
    root = tmp_path / "src"
    shutil.copytree(tiny_root / "val", root / "val")
    ann = root / "val/Annotations/iSAID_val.json"
    data = json.loads(ann.read_text())
    first = data["images"][0]
    if copy_to:
        (root / "val/images" / copy_to).parent.mkdir(parents=True)
        shutil.copyfile(root / "val/images" / first["file_name"], root / "val/images" / copy_to)
    data["images"].append({**first, "id": 999, "file_name": file_name})
    ann.write_text(json.dumps(data))
    return root, first["file_name"]


def test_same_stem_in_two_folders_is_refused_naming_both_files(tiny_root, tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    root, name = _with_extra_image(tiny_root, tmp_path, "again/" + "P0003.png", copy_to="again/P0003.png")
    out = tmp_path / "out"
    with pytest.raises(PatchIdClash) as err:
        run_plan(plan_config(root, out), progress=False)
    msg = str(err.value)
    assert str(root / "val/images/P0003.png") in msg and str(root / "val/images/again/P0003.png") in msg
    assert "\n" not in msg and not list((out / "val").glob("patches/*.png"))  # refused before anything is planned
    res = CliRunner().invoke(app, ["plan", str(root), str(tmp_path / "cli"), "--quiet"])
    assert res.exit_code == 2 and "again/P0003.png" in res.output and "Traceback" not in res.output


def test_one_image_listed_twice_under_two_ids_is_refused(tiny_root, tmp_path):
    root, name = _with_extra_image(tiny_root, tmp_path, "P0003.png")
    with pytest.raises(PatchIdClash, match=r"P0003\.png is listed twice \(image ids \d+ and 999\)"):
        run_plan(plan_config(root, tmp_path / "out"), progress=False)


def test_patch_id_clashes_sees_a_tile_id_taken_by_a_devkit_patch(tiny_root, tmp_path):
    """A tiled image's window ids are foreseen from the annotated size, not only its own name (pure)."""
    cfg = plan_config(tiny_root, tmp_path)
    big = SourceImage(1, "P9", tmp_path / "P9.png", "P9.png", 1600, 1600)
    patch = SourceImage(2, "P9_0_800_0_800", tmp_path / "p/P9_0_800_0_800.png", "p/P9_0_800_0_800.png", None, None,
                        untiled=True)
    other = SourceImage(3, "P10", tmp_path / "P10.png", "P10.png", 1600, 1600)
    assert patch_id_clashes([big, other], cfg) == []
    (line,) = patch_id_clashes([big, patch, other], cfg)
    assert "P9.png" in line and "P9_0_800_0_800.png" in line and "'P9_0_800_0_800'" in line


# --- every file a shard names is checked ------------------------------------------------------------------

def test_manifest_records_every_png_and_a_rerun_rebuilds_a_missing_or_damaged_one(tiny_root, tmp_path):
    out = tmp_path / "out"
    cfg = plan_config(tiny_root, out, output={"shard_images": 1})
    run_plan(cfg, progress=False)
    manifest = json.loads((out / "val/plans/_manifest.json").read_text())
    named = {p for r in _table(out).to_pylist() for p in (r["image_path"], r["som_path"]) if p}
    recorded = {rel: e for s in manifest["shards"].values() for rel, e in s["files"].items()}
    assert set(recorded) == named and named
    for rel, e in recorded.items():
        data = (out / "val" / rel).read_bytes()
        assert e == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    patch, som = sorted(r for r in named if r.startswith("patches/"))[0], sorted(r for r in named if r.startswith("som/"))[-1]
    good = {rel: (out / "val" / rel).read_bytes() for rel in (patch, som)}
    (out / "val" / patch).unlink()
    damaged = bytearray(good[som])
    damaged[len(damaged) // 2] ^= 0xFF  # same size, other bytes: found by the hash
    (out / "val" / som).write_bytes(bytes(damaged))
    again = run_plan(cfg, progress=False)
    assert again.shards_skipped == 1 and len(again.replanned) == 2
    assert any(f"{patch} is missing" in w for w in again.replanned) and any(f"{som} is damaged" in w for w in again.replanned)
    assert "replanned" in again.table()
    assert all((out / "val" / rel).read_bytes() == data for rel, data in good.items())
    assert run_plan(cfg, progress=False).shards_skipped == 3  # and now all check out


def test_shard_without_recorded_files_is_planned_again(tiny_root, tmp_path):
    out = tmp_path / "out"
    cfg = plan_config(tiny_root, out)
    run_plan(cfg, progress=False)
    path = out / "val/plans/_manifest.json"
    manifest = json.loads(path.read_text())
    for e in manifest["shards"].values():
        del e["files"]  # as an earlier version wrote it
    path.write_text(json.dumps(manifest))
    again = run_plan(cfg, progress=False)
    assert again.shards_skipped == 0 and "never recorded" in again.replanned[0]


def test_overwrite_removes_what_the_old_config_wrote(tiny_root, tmp_path):
    out = tmp_path / "out"
    run_plan(plan_config(tiny_root, out), progress=False)
    stale = [out / "val/patches/OLD_0_800_0_800.png", out / "val/som/OLD_0_800_0_800.png"]
    for p in stale:
        p.write_bytes(b"a patch of the old config")
    other = plan_config(tiny_root, out, tiers={"max_marks": 2}, output={"write_som": False})
    (out / "val/quarantine.jsonl").write_text('{"stale": true}\n')
    run_plan(other, progress=False, overwrite=True)
    assert not any(p.exists() for p in stale) and not list((out / "val/som").glob("*.png"))
    named = {r["image_path"] for r in _table(out).to_pylist()}
    assert {f"patches/{p.name}" for p in (out / "val/patches").glob("*.png")} == named
    assert "stale" not in (out / "val/quarantine.jsonl").read_text()
