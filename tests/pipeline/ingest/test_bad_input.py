"""Every kind of bad input gets a clear message naming file, image and annotation; nothing written is lost."""

from __future__ import annotations

import json
import math
import os
import shutil

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.contracts.quarantine import BadRecord
from pipeline.planning.stage import run_plan
from pipeline.synthetic.tiny_build import plan_config

JSON_REL = "val/Annotations/iSAID_val.json"


@pytest.fixture
def bad_root(tiny_root, tmp_path):
    """A writable copy of the tiny val split, plus a helper to edit its JSON."""
    root = tmp_path / "data"
    shutil.copytree(tiny_root / "val", root / "val")
    return root


def _edit(root, fn):
    path = root / JSON_REL
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))  # json writes NaN as a bare NaN token, as a sloppy exporter would
    return data


def _first_ann(data, image_name="P0003.png"):
    img = next(i for i in data["images"] if i["file_name"] == image_name)
    return img, next(a for a in data["annotations"] if a["image_id"] == img["id"])


def _issues(root, tmp_path, **kw):
    summary = run_plan(plan_config(root, tmp_path / "out", **kw), progress=False)
    return summary, {(i.kind, i.image, i.ann_id): i for i in summary.issues}


CASES = {
    "polygon-too-few-points": lambda a: a.__setitem__("segmentation", [[10, 10, 20, 20]]),
    "polygon-not-finite": lambda a: a.__setitem__("segmentation", [[10, 10, math.nan, 20, 30, 10]]),
    "polygon-out-of-bounds": lambda a: a.__setitem__("segmentation", [[10, 10, 5000, 20, 30, 10]]),
    "polygon-odd-length": lambda a: a.__setitem__("segmentation", [[10, 10, 20, 20, 30]]),
    "category-unknown": lambda a: a.__setitem__("category_id", 99),
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_bad_annotation_is_quarantined_with_file_image_and_id(bad_root, tmp_path, kind):
    data = _edit(bad_root, lambda d: CASES[kind](_first_ann(d)[1]))
    img, ann = _first_ann(data)
    summary, issues = _issues(bad_root, tmp_path)
    issue = issues[(kind, "P0003", ann["id"])]
    assert issue.file.endswith("iSAID_val.json") and str(ann["id"]) in str(issue) and "P0003" in str(issue)
    # the rest of the image is still planned; the bad annotation is nowhere in the plans
    rows = [r for r in _rows(tmp_path / "out") if r["source_image"] == "P0003"]
    assert rows and all(o["object_id"] != ann["id"] for r in rows for o in r["objects"])
    report = (tmp_path / "out/val/quarantine.jsonl").read_text()
    assert json.loads(report.splitlines()[0])["kind"] and kind in report


def _rows(out):
    import pyarrow.dataset as ds

    return ds.dataset(out / "val" / "plans", format="parquet").to_table().to_pylist()


def test_self_intersection_is_repaired_and_warned(bad_root, tmp_path):
    def bowtie(d):
        img, ann = _first_ann(d)
        x, y = 400, 400
        ann["segmentation"] = [[x, y, x + 60, y + 60, x + 60, y, x, y + 60]]
    data = _edit(bad_root, bowtie)
    _, ann = _first_ann(data)
    summary, issues = _issues(bad_root, tmp_path)
    issue = issues[("polygon-repaired", "P0003", ann["id"])]
    assert issue.severity == "warning" and "Self-intersection" in issue.message
    assert any(o["object_id"] == ann["id"] for r in _rows(tmp_path / "out") for o in r["objects"])


def test_duplicate_ids(bad_root, tmp_path):
    def dup(d):
        d["annotations"].append(dict(d["annotations"][0]))
        d["images"].append(dict(d["images"][0], file_name="P0003_copy.png"))
    data = _edit(bad_root, dup)
    shutil.copy(bad_root / "val/images/P0003.png", bad_root / "val/images/P0003_copy.png")
    _, issues = _issues(bad_root, tmp_path)
    kinds = {k for k, _, _ in issues}
    assert {"duplicate-annotation-id", "duplicate-image-id"} <= kinds
    dup_ann = next(i for (k, _, _), i in issues.items() if k == "duplicate-annotation-id")
    assert dup_ann.ann_id == data["annotations"][0]["id"]


def test_missing_unreadable_and_wrong_size_images(bad_root, tmp_path):
    names = sorted(p.name for p in (bad_root / "val/images").glob("P????.png"))
    missing, garbage, resized = names[0], names[1], names[2]
    (bad_root / "val/images" / missing).unlink()
    (bad_root / "val/images" / garbage).write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    _edit(bad_root, lambda d: next(i for i in d["images"] if i["file_name"] == resized).__setitem__("width", 999))
    summary, issues = _issues(bad_root, tmp_path)
    by_kind = {k: i for (k, _, _), i in issues.items()}
    assert by_kind["image-missing"].image == missing and missing in by_kind["image-missing"].message
    assert by_kind["image-unreadable"].image == garbage.removesuffix(".png")
    assert "999" in by_kind["image-size-mismatch"].message
    assert summary.stats["kept"] == 0  # every image of the split was bad
    assert (tmp_path / "out/val/plans/_manifest.json").exists()


@pytest.mark.parametrize("name", ["../outside.png", "/etc/passwd", "link.png"])
def test_file_names_outside_the_root_are_refused(bad_root, tmp_path, name):
    outside = tmp_path / "outside.png"
    shutil.copy(next((bad_root / "val/images").glob("P????.png")), outside)
    if name == "link.png":
        os.symlink(outside, bad_root / "val/images/link.png")
    elif name.startswith(".."):
        shutil.copy(outside, bad_root / "val/outside.png")  # exists, but outside the image folder is fine...
        name = "../../../outside.png"  # ...this one leaves the dataset root
    _edit(bad_root, lambda d: d["images"][0].__setitem__("file_name", name))
    _, issues = _issues(bad_root, tmp_path)
    issue = next(i for (k, _, _), i in issues.items() if k == "path-outside-root")
    assert name in issue.message and issue.file.endswith("iSAID_val.json")


def test_strict_stops_at_first_bad_record_and_keeps_finished_shards(bad_root, tmp_path):
    names = sorted(p.name for p in (bad_root / "val/images").glob("P????.png"))
    (bad_root / "val/images" / names[-1]).write_bytes(b"garbage")  # the last image of the last shard
    out = tmp_path / "out"
    with pytest.raises(BadRecord, match="image-unreadable"):
        run_plan(plan_config(bad_root, out, strict=True, output={"shard_images": 1}), progress=False)
    manifest = json.loads((out / "val/plans/_manifest.json").read_text())
    assert len(manifest["shards"]) == 2 and not manifest["complete"]
    assert not list(out.rglob("*.tmp"))


def test_strict_refuses_a_bad_annotation_before_any_work(bad_root, tmp_path):
    _edit(bad_root, lambda d: CASES["category-unknown"](_first_ann(d)[1]))
    res = CliRunner().invoke(app, ["plan", str(bad_root), str(tmp_path / "out"), "--strict", "-q", "--workers", "1"])
    assert res.exit_code == 2
    assert "iSAID_val.json" in res.output and "P0003" in res.output and "category_id 99" in res.output
    assert not list((tmp_path / "out").rglob("*.parquet"))


def test_unreadable_annotation_file_is_a_clear_error(bad_root, tmp_path):
    (bad_root / JSON_REL).write_text("{ not json")
    res = CliRunner().invoke(app, ["plan", str(bad_root), str(tmp_path / "out"), "-q"])
    assert res.exit_code == 2 and "iSAID_val.json" in res.output and "cannot read annotation JSON" in res.output
