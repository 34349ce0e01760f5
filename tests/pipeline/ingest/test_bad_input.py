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
from pipeline.planning.planner import NothingPlanned
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
    with pytest.raises(NothingPlanned, match="nothing planned.*image-missing") as exc:
        run_plan(plan_config(bad_root, tmp_path / "out"), progress=False)
    summary = exc.value.summary
    by_kind = {i.kind: i for i in summary.issues}
    assert by_kind["image-missing"].image == missing and missing in by_kind["image-missing"].message
    assert by_kind["image-unreadable"].image == garbage.removesuffix(".png")
    assert "999" in by_kind["image-size-mismatch"].message
    assert summary.stats["kept"] == 0  # every image of the split was bad: an error, never an empty split
    manifest = json.loads((tmp_path / "out/val/plans/_manifest.json").read_text())
    assert manifest["shards"] and not manifest["complete"]  # shards kept for resume; no later stage reads it
    assert "image-missing" in (tmp_path / "out/val/quarantine.jsonl").read_text()


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


# ---------------------------------------------------------------- one bad record never stops a split


def _rle(counts, size=None):
    """Set the first annotation of P0003 to an RLE segmentation (size defaults to the image's)."""
    def edit(d):
        img, ann = _first_ann(d)
        ann["segmentation"] = {"size": size or [img["height"], img["width"]], "counts": counts}
    return edit


def _ann_field(key, value):
    return lambda d: _first_ann(d)[1].__setitem__(key, value)


# kind, edit of the JSON, a fragment of the message; each must quarantine exactly that annotation
RECORD_CASES = {
    "rle-garbage-string": ("rle-invalid", _rle("garbage!!~~"), "not a valid compressed string"),
    "rle-empty-string": ("rle-invalid", _rle(""), "runs cover 0 pixels"),
    "rle-list-short": ("rle-invalid", _rle([5, 10, 5]), "runs cover 20 pixels"),
    "rle-list-negative": ("rle-invalid", _rle([-5, 10]), "run length of -5"),
    "rle-list-not-ints": ("rle-invalid", _rle([1.5, "x"]), "other than integers"),
    "rle-size-not-two-ints": ("rle-invalid", _rle([1, 2], size=[0, "w"]), "two positive integers"),
    "rle-size-other-image": ("rle-size-mismatch", _rle([1, 2], size=[3, 1]), "differs from the image"),
    "image-id-list": ("annotation-invalid", _ann_field("image_id", [1, 2]), "image_id [1, 2] is not an integer"),
    "image-id-bool": ("annotation-invalid", _ann_field("image_id", True), "image_id True is not an integer"),
    "image-id-int64": ("annotation-invalid", _ann_field("image_id", 2**63), "outside the int64 range"),
    "category-id-list": ("category-unknown", _ann_field("category_id", [1]), "category_id [1] is not an integer"),
    "category-id-float": ("category-unknown", _ann_field("category_id", 1.0), "not an integer"),
    "polygon-nested": ("polygon-not-numeric", _ann_field("segmentation", [[[10, 10, 20, 20, 30, 10]]]), "nested deeper"),
    "polygon-huge-int": ("polygon-out-of-bounds", _ann_field("segmentation", [[10, 10, 10**400, 20, 30, 10]]), "polygon 0"),
    "segmentation-rle-list": ("segmentation-invalid", _ann_field("segmentation", [{"size": [1, 1], "counts": "1"}]), "RLE"),
}


@pytest.mark.parametrize("case", sorted(RECORD_CASES))
def test_bad_record_is_quarantined_and_the_rest_planned(bad_root, tmp_path, case):
    kind, edit, fragment = RECORD_CASES[case]
    _, ann = _first_ann(json.loads((bad_root / JSON_REL).read_text()))  # before the edit, which may move it
    _edit(bad_root, edit)
    summary, issues = _issues(bad_root, tmp_path)
    bad = [i for i in summary.issues if i.kind == kind]
    assert len(bad) == 1, summary.issues
    issue = bad[0]
    assert issue.file.endswith("iSAID_val.json") and issue.ann_id == ann["id"] and fragment in issue.message
    if not case.startswith("image-id"):  # a bad image_id cannot name its image; it is named by the id given
        assert issue.image == "P0003"
    assert f"annotation {ann['id']}" in str(issue) and "iSAID_val.json" in str(issue)
    rows = _rows(tmp_path / "out")
    assert {r["source_image"] for r in rows} >= {"P0003"}  # the image and the split are still planned
    assert all(o["object_id"] != ann["id"] for r in rows for o in r["objects"])
    assert kind in (tmp_path / "out/val/quarantine.jsonl").read_text()


def _raw_edit(root, fn):
    """Edit the JSON text itself (for what json.dumps cannot write, e.g. a 5000-digit integer)."""
    path = root / JSON_REL
    path.write_text(fn(path.read_text()))


@pytest.mark.parametrize("bad_id", ["[7, 8]", str(2**63), "9" * 5000, "true", "1.5"])
def test_annotation_ids_that_are_not_int64_are_quarantined(bad_root, tmp_path, bad_id):
    data = _edit(bad_root, _ann_field("id", "__BAD_ID__"))
    ann = next(a for a in data["annotations"] if a["id"] == "__BAD_ID__")
    _raw_edit(bad_root, lambda t: t.replace('"__BAD_ID__"', bad_id))
    summary, _ = _issues(bad_root, tmp_path)
    issue = next(i for i in summary.issues if i.kind == "annotation-invalid")
    k = data["annotations"].index(ann)
    assert issue.image == "P0003" and f"annotations[{k}]" in issue.message and "iSAID_val.json" in issue.file
    assert ("int64" if bad_id.isdigit() else "not an integer") in issue.message
    assert len(issue.message) < 200  # a 5000-digit id is named, not printed
    assert summary.stats["kept"] > 0


IMAGE_CASES = {
    "id-list": ("image-record-invalid", "id", [3], "image id [3] is not an integer"),
    "id-out-of-range": ("image-record-invalid", "id", -(2**63) - 1, "outside the int64 range"),
    "name-nul": ("image-record-invalid", "file_name", "P00\x0003.png", "contains a NUL byte"),
    "name-surrogate": ("image-record-invalid", "file_name", "P\ud80003.png", "not valid UTF-8"),
    "name-list": ("image-record-invalid", "file_name", ["P0003.png"], "not a non-empty string"),
    "width-bool": ("image-size-invalid", "width", True, "positive integers"),
    "height-too-large": ("image-size-invalid", "height", 2**40, "positive integers"),
}


@pytest.mark.parametrize("case", sorted(IMAGE_CASES))
def test_bad_image_record_is_quarantined_with_its_annotations(bad_root, tmp_path, case):
    kind, key, value, fragment = IMAGE_CASES[case]
    first_id = _first_ann(json.loads((bad_root / JSON_REL).read_text()))[0]["id"]
    data = _edit(bad_root, lambda d: _first_ann(d)[0].__setitem__(key, value))
    img = next(i for i in data["images"] if i[key] == value)
    summary, _ = _issues(bad_root, tmp_path)
    issue = next(i for i in summary.issues if i.kind == kind)
    assert fragment in issue.message and issue.file.endswith("iSAID_val.json") and issue.image is not None
    assert f"images[{data['images'].index(img)}]" in issue.message or kind == "image-size-invalid"
    line = str(issue)
    assert "\x00" not in line and line.isprintable() and line.encode("utf-8")  # one printable line
    orphans = [i for i in summary.issues if i.kind == "annotation-image-unknown"]
    assert len(orphans) == sum(a["image_id"] == first_id for a in data["annotations"]) > 0
    assert all(i.ann_id is not None for i in orphans)
    assert summary.stats["kept"] > 0 and "P0003" not in {r["source_image"] for r in _rows(tmp_path / "out")}
    json.loads((tmp_path / "out/val/quarantine.jsonl").read_text().splitlines()[0])  # the report stays valid JSON


def test_bad_category_entry_is_quarantined(bad_root, tmp_path):
    _edit(bad_root, lambda d: d["categories"].append({"id": [1], "name": "odd"}))
    summary, _ = _issues(bad_root, tmp_path)
    issue = next(i for i in summary.issues if i.kind == "category-record-invalid")
    assert "category id [1]" in issue.message and issue.file.endswith("iSAID_val.json")


def _cli_plan(root, out, *extra):
    return CliRunner().invoke(app, ["plan", str(root), str(out), "-q", "--workers", "1", *extra])


def test_pathologically_nested_json_is_refused_naming_the_file(bad_root, tmp_path):
    (bad_root / JSON_REL).write_text('{"images": [], "annotations": ' + "[" * 100_000 + "]" * 100_000 + "}")
    res = _cli_plan(bad_root, tmp_path / "out")
    assert res.exit_code == 2 and "iSAID_val.json" in res.output and "nested deeper" in res.output
    assert "Traceback" not in res.output and not list((tmp_path / "out").rglob("*.parquet"))


def test_moderately_nested_record_is_quarantined_not_the_file(bad_root, tmp_path):
    """Nesting the parser can read (here 500 levels) is one bad record: it is quarantined, the rest planned."""
    _edit(bad_root, _ann_field("segmentation", json.loads("[" * 500 + "]" * 500)))
    summary, _ = _issues(bad_root, tmp_path)
    issue = next(i for i in summary.issues if i.kind == "polygon-not-numeric")
    assert issue.image == "P0003" and summary.stats["kept"] > 0


def test_file_without_annotations_key_is_refused(bad_root, tmp_path):
    _edit(bad_root, lambda d: d.pop("annotations"))
    res = _cli_plan(bad_root, tmp_path / "out")
    assert res.exit_code == 2 and "iSAID_val.json" in res.output and "no `annotations` list" in res.output


def test_settings_that_keep_no_patch_stop_with_an_error(bad_root, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("filters:\n  min_objects: 100000\n")
    res = _cli_plan(bad_root, tmp_path / "out", "--config", str(cfg))
    assert res.exit_code == 2 and "nothing planned" in res.output and "fewer than 100000 objects" in res.output
    manifest = json.loads((tmp_path / "out/test/plans/_manifest.json").read_text())
    assert not manifest["complete"]
    res = _cli_plan(bad_root, tmp_path / "out", "--config", str(cfg))  # a rerun resumes and says the same
    assert res.exit_code == 2 and "nothing planned" in res.output


@pytest.fixture
def no_hang():
    """Fail instead of blocking for ever if a FIFO is opened."""
    import signal

    def boom(*_):
        raise TimeoutError("a FIFO was opened")
    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _special(path, kind):
    path.unlink(missing_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
        return None
    import socket

    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    return s


@pytest.mark.parametrize("kind", ["fifo", "socket"])
def test_annotation_file_that_is_not_regular_is_refused_unopened(bad_root, tmp_path, no_hang, kind):
    sock = _special(bad_root / JSON_REL, kind)
    res = _cli_plan(bad_root, tmp_path / "out")
    assert res.exit_code == 2 and "iSAID_val.json" in res.output and "not a regular file" in res.output
    if sock:
        sock.close()


def test_annotation_device_file_is_refused():
    from pipeline.ingest.coco import load_json
    from pipeline.ingest.source import SourceError
    from pathlib import Path

    with pytest.raises(SourceError, match="/dev/null: the annotation file is a character device"):
        load_json(Path("/dev/null"))


@pytest.mark.parametrize("kind", ["fifo", "socket"])
def test_image_that_is_not_regular_is_quarantined_unopened(bad_root, tmp_path, no_hang, kind):
    sock = _special(bad_root / "val/images/P0003.png", kind)
    summary, _ = _issues(bad_root, tmp_path)
    issue = next(i for i in summary.issues if i.kind == "image-not-regular-file")
    assert issue.image == "P0003.png" and "P0003.png" in issue.message and "not a regular file" in issue.message
    assert summary.stats["kept"] > 0
    if sock:
        sock.close()


def test_mask_layout_refuses_fifos_and_non_utf8_names(bad_root, tmp_path, no_hang):
    (bad_root / JSON_REL).unlink()  # the mask-PNG layout
    images = bad_root / "val/images"
    os.mkfifo(images / "P0099.png")
    os.mkfifo(images / "P0003_instance_id_RGB.png.fifo")
    (images / "P0003_instance_id_RGB.png").unlink()
    os.mkfifo(images / "P0003_instance_id_RGB.png")
    fd = os.open(os.fsencode(images) + b"/P\xff01.png", os.O_CREAT | os.O_WRONLY)
    os.close(fd)
    summary, _ = _issues(bad_root, tmp_path)
    kinds = {i.kind: i for i in summary.issues}
    assert "P0099.png" in kinds["image-not-regular-file"].message
    assert kinds["mask-not-regular-file"].image == "P0003" and "FIFO" in kinds["mask-not-regular-file"].message
    assert "not valid UTF-8" in kinds["file-name-invalid"].message and str(kinds["file-name-invalid"]).isprintable()
    assert summary.stats["kept"] > 0


def test_planner_quarantines_a_malformed_rle_the_reader_never_saw(tiny_root, tmp_path):
    """SourceImages may come from elsewhere than the readers: the planner checks each RLE before decoding."""
    from pipeline.contracts.quarantine import Quarantine
    from pipeline.contracts.records import SourceObject
    from pipeline.ingest import open_source
    from pipeline.planning.planner import plan_image

    cfg = plan_config(tiny_root, tmp_path / "out")
    src = open_source(cfg.source, Quarantine())
    img = next(im for im in src.images if im.name == "P0003")
    keep = len(img.objects)
    img.objects.append(SourceObject(987654, img.objects[0].category_id, rle={"size": [img.height, img.width], "counts": ""}))
    img.objects.append(SourceObject(987655, img.objects[0].category_id, rle={"size": [img.height, img.width],
                                                                           "counts": [img.height * img.width + 5]}))
    res = plan_image(img, cfg, src.vocabulary, tmp_path / "out" / "val")
    bad = {i.ann_id: i for i in res.issues if i.kind == "rle-invalid"}
    assert set(bad) == {987654, 987655} and all(i.image == "P0003" for i in bad.values())
    assert all(i.file == img.annotations and i.file.endswith("iSAID_val.json") for i in bad.values())  # the file
    assert res.plans and keep > 0
    with pytest.raises(BadRecord, match="rle-invalid"):
        plan_image(img, cfg.model_copy(update={"strict": True}), src.vocabulary, tmp_path / "out" / "val")
