"""Readers of every input layout, and bad input refused with the image named (nothing dropped silently)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.eval.readers import load
from model.eval.run import check_pairing
from model.eval.types import EvalInputError
from pipeline.contracts.shards import write_manifest
from tests.model.eval.evalkit import (SCENES, gcg_row, gt_images, rle, scene_description, write_geopixeld,
                                      write_glamm, write_predictions, write_records)

I1, I2 = sorted(SCENES)
SHARED_SAMPLE = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "geopixeld-sample"


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        x, y = a[k], b[k]
        assert (x.image_id, x.height, x.width, x.caption) == (y.image_id, y.height, y.width, y.caption)
        assert [p.text for p in x.phrases] == [p.text for p in y.phrases]
        assert [p.rle for p in x.phrases] == [p.rle for p in y.phrases]


@pytest.fixture
def records(tmp_path):
    gt = gt_images()
    return write_records(tmp_path / "out" / "val" / "records", [gcg_row(gt[i], scene_description(i)) for i in SCENES])


def test_record_parquet_as_folder_file_and_build_root(records, tmp_path):
    want = gt_images()
    for paths, split in (([records], None), ([next(records.glob("*.parquet"))], None), ([tmp_path / "out"], "val"),
                         ([records.parent], None)):
        got = load(paths, "ground truth", split)
        _same(got.images, want)
        assert got.format == "parquet-records"
    assert [p.objects for p in load([records], "ground truth").images[I1].phrases] == [1, 2, 1]
    with pytest.raises(EvalInputError, match="--split"):
        load([tmp_path / "out"], "ground truth")


def test_ground_truth_keeps_what_the_release_keeps_predictions_keep_everything(tmp_path):
    gt = gt_images()
    rows = [gcg_row(gt[I1], scene_description(I1)), gcg_row(gt[I2], scene_description(I2), status="failed")]
    rows[1]["description"], rows[1]["phrases"] = None, []  # what drafting leaves in a failed record
    folder = write_records(tmp_path / "recs", rows)
    g = load([folder], "ground truth")
    assert list(g.images) == [I1] and "1 failed records" in g.notes[0]
    p = load([folder], "predictions")
    assert sorted(p.images) == [I1, I2] and p.images[I2].phrases == [] and p.images[I2].caption == ""
    rows[1] = gcg_row(gt[I2], scene_description(I2), curation="rejected")
    write_records(folder, rows)
    assert list(load([folder], "ground truth").images) == [I1]


def test_unfinished_record_shards_are_refused(records):
    write_manifest(records, {"complete": False, "shards": {}})
    with pytest.raises(EvalInputError, match="unfinished"):
        load([records], "ground truth")


def test_prediction_parquet_with_only_the_predict_columns(tmp_path):
    gt = gt_images()
    path = write_predictions(tmp_path / "pred.parquet",
                             [(i, scene_description(i), [p.rle for p in gt[i].phrases], (100, 100)) for i in SCENES])
    got = load([path], "predictions").images
    _same(got, gt)
    assert all(p.objects is None for p in got[I1].phrases)


def test_geopixeld_layout_reads_back_what_the_exporter_wrote(tmp_path):
    gt = gt_images()
    index = write_geopixeld(tmp_path / "gpd", "val", [(gt[i], scene_description(i)) for i in SCENES])
    for path, split in ((index, None), (tmp_path / "gpd", None), (tmp_path / "gpd", "val"), (tmp_path / "gpd" / "val", None)):
        got = load([path], "ground truth", split)
        assert got.format == "geopixeld-json"
        _same(got.images, gt)  # rectangles survive polygon tracing and filling exactly
    assert [p.objects for p in got.images[I1].phrases] == [1, 2, 1]  # polygons per [SEG] entry


def test_geopixeld_without_pngs_takes_the_size_from_the_ground_truth(tmp_path):
    gt = gt_images()
    write_geopixeld(tmp_path / "gpd", "val", [(gt[i], scene_description(i)) for i in SCENES], with_png=False)
    with pytest.raises(EvalInputError, match="cannot tell the image size"):
        load([tmp_path / "gpd"], "ground truth")
    _same(load([tmp_path / "gpd"], "predictions", sizes={i: (100, 100) for i in SCENES}).images, gt)


@pytest.mark.skipif(not SHARED_SAMPLE.is_dir(), reason="../shared/fixtures/geopixeld-sample is absent")
def test_the_released_geopixeld_sample_reads():
    got = load([SHARED_SAMPLE / "GeoPixelD.json"], "ground truth").images
    (img,) = got.values()
    assert img.image_id == "P0224_0_800_0_800" and (img.height, img.width) == (800, 800)
    assert [p.text for p in img.phrases] == ["tennis court"] * 4
    assert "<p>" not in img.caption and "[SEG]" not in img.caption and "tennis court-1" not in img.caption
    assert all(p.rle["size"] == [800, 800] for p in img.phrases)


def test_glamm_prediction_jsons_plain_wrapped_and_uncompressed(tmp_path):
    gt = gt_images()
    folder = tmp_path / "glamm"
    write_glamm(folder, I1, gt[I1].caption, [p.text for p in gt[I1].phrases], [p.rle for p in gt[I1].phrases])
    write_glamm(folder, I2, gt[I2].caption, [p.text for p in gt[I2].phrases], [p.rle for p in gt[I2].phrases],
                wrapped=True, uncompressed=True)
    got = load([folder], "predictions")
    assert got.format == "glamm-json"
    _same(got.images, gt)


def test_several_ground_truth_paths_are_merged_and_duplicates_refused(tmp_path):
    gt = gt_images()
    a = write_records(tmp_path / "a", [gcg_row(gt[I1], scene_description(I1))])
    b = write_records(tmp_path / "b", [gcg_row(gt[I2], scene_description(I2))])
    assert sorted(load([a, b], "ground truth").images) == [I1, I2]
    with pytest.raises(EvalInputError, match=f"image {I1} appears more than once"):
        load([a, a], "ground truth")


# ---------------------------------------------------------------- bad predictions


def _pred(tmp_path, items):
    return load([write_predictions(tmp_path / "pred.parquet", items)], "predictions",
                sizes={i: (100, 100) for i in SCENES}).images


def _ok_items(skip=()):
    gt = gt_images()
    return [(i, scene_description(i), [p.rle for p in gt[i].phrases], (100, 100)) for i in SCENES if i not in skip]


def test_missing_images_are_an_error_naming_them_or_scored_empty(tmp_path):
    pred = _pred(tmp_path, _ok_items(skip=[I2]))
    with pytest.raises(EvalInputError) as err:
        check_pairing(gt_images(), pred)
    assert f"image {I2}: in the ground truth" in str(err.value) and "not in the predictions" in str(err.value)
    filled = check_pairing(gt_images(), pred, missing="empty")
    assert sorted(filled) == [I1, I2] and filled[I2].phrases == [] and filled[I2].caption == ""


def test_extra_images_are_an_error_naming_them(tmp_path):
    items = _ok_items() + [("P9999_0_100_0_100", "A field.", [], (100, 100))]
    with pytest.raises(EvalInputError, match="image P9999_0_100_0_100: predicted .* but not in the ground truth"):
        check_pairing(gt_images(), _pred(tmp_path, items))
    with pytest.raises(EvalInputError, match="P9999_0_100_0_100"):  # even when missing images are allowed
        check_pairing(gt_images(), _pred(tmp_path, items), missing="empty")


def test_masks_of_the_wrong_size_are_an_error_naming_the_image(tmp_path):
    items = _ok_items()
    pid, desc, masks, _ = items[0]
    items[0] = (pid, desc, [rle([(1, 1, 5, 5)], 200, 100)] + masks[1:], (100, 100))
    with pytest.raises(EvalInputError, match=f"image {pid}: mask 0 is 200x100 .* but the image is 100x100"):
        _pred(tmp_path, items)
    # every mask of another size than the true image (consistent within the file)
    items = _ok_items()
    pid, desc, masks, _ = items[1]
    items[1] = (pid, desc, [rle([(1, 1, 5, 5)], 80, 80)] * 3, (80, 80))
    with pytest.raises(EvalInputError, match=f"image {pid}: predicted masks are 80x80 .* but the image is 100x100"):
        check_pairing(gt_images(), _pred(tmp_path, items))


def test_more_seg_than_masks_is_an_error_naming_the_image(tmp_path):
    items = _ok_items()
    pid, desc, masks, hw = items[0]
    items[0] = (pid, desc, masks[:2], hw)  # 3 [SEG], 2 masks
    with pytest.raises(EvalInputError, match=f"image {pid}: 3 \\[SEG\\] in the description but 2 masks"):
        _pred(tmp_path, items)
    items = _ok_items()
    pid, desc, masks, hw = items[1]
    items[1] = (pid, desc + " Also [SEG] here.", masks, hw)  # a [SEG] without its <p> phrase
    with pytest.raises(EvalInputError, match=f"image {pid}: 4 \\[SEG\\] in the description but 3 masks"):
        _pred(tmp_path, items)


def test_glamm_phrases_and_masks_must_agree(tmp_path):
    gt = gt_images()
    write_glamm(tmp_path / "g", I1, gt[I1].caption, ["tennis court"], [p.rle for p in gt[I1].phrases])
    with pytest.raises(EvalInputError, match=f"{I1}: 1 phrases but 3 masks"):
        load([tmp_path / "g"], "predictions")


def test_corrupt_rle_and_polygons_outside_the_image(tmp_path):
    items = _ok_items()
    pid, desc, masks, hw = items[0]
    items[0] = (pid, desc, [{"size": [100, 100], "counts": "@@@@not-rle"}] + masks[1:], hw)
    with pytest.raises(EvalInputError, match=f"image {pid}: mask 0: not a COCO RLE"):
        _pred(tmp_path, items)
    gt = gt_images()
    write_geopixeld(tmp_path / "gpd", "val", [(gt[i], scene_description(i)) for i in SCENES])
    per_patch = tmp_path / "gpd" / "val" / f"{I2}.json"
    data = json.loads(per_patch.read_text())
    data["polygons"][1][0][0] = [150, 20]
    per_patch.write_text(json.dumps(data))
    with pytest.raises(EvalInputError, match=f"image {I2}: mask 1: polygon points reach \\(150, .*outside the 100x100"):
        load([tmp_path / "gpd"], "predictions")


def test_every_problem_is_listed_not_just_the_first(tmp_path):
    items = _ok_items()
    items = [(pid, desc, masks[:1], hw) for pid, desc, masks, hw in items]
    with pytest.raises(EvalInputError) as err:
        _pred(tmp_path, items)
    assert len(err.value.problems) == 2 and I1 in str(err.value) and I2 in str(err.value)


def test_unknown_files_are_refused_clearly(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(EvalInputError, match="neither a GeoPixelD index"):
        load([tmp_path / "x.json"], "predictions")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EvalInputError, match="no Parquet shards, GeoPixelD JSON or GLaMM JSON"):
        load([tmp_path / "empty"], "predictions")
    with pytest.raises(EvalInputError, match="no such file"):
        load([tmp_path / "nope"], "ground truth")


def test_release_dataset_folder_phrases_point_at_masks_by_id(tmp_path):
    import pyarrow as pa

    from pipeline.contracts.dataset_schema import DATASET_SCHEMA
    from pipeline.contracts.shards import write_table

    gt = gt_images()
    rows = []
    for i in SCENES:
        n = len(gt[i].phrases)
        order = list(reversed(range(n)))  # masks stored in another order than the phrases: mask_id decides
        rows.append({"schema_version": 1, "patch_id": i, "split": "test", "width": 100, "height": 100,
                     "description": scene_description(i),
                     "phrases": [{"tag": "t", "start": 0, "end": 0, "tier": "instance", "mask_id": k} for k in range(n)],
                     "masks": [{"mask_id": k, "tier": "instance", "category": "x",
                                "object_ids": list(range(gt[i].phrases[k].objects)), "bbox": [0, 0, 1, 1], "area": 1,
                                "rle": gt[i].phrases[k].rle} for k in order]})
    for split in ("test", "train"):
        (tmp_path / "ds" / "data" / split).mkdir(parents=True)
    write_table(pa.Table.from_pylist(rows, schema=DATASET_SCHEMA), tmp_path / "ds/data/test/test-00000.parquet")
    got = load([tmp_path / "ds"], "ground truth", "test")
    assert got.format == "parquet-dataset"
    _same(got.images, gt)
    assert [p.objects for p in got.images[I2].phrases] == [2, 1, 1]
    with pytest.raises(EvalInputError, match="splits test, train; choose one with --split"):
        load([tmp_path / "ds"], "ground truth")


def test_a_predicted_seg_without_its_phrase_is_scored_as_an_empty_phrase(tmp_path):
    items = _ok_items()
    pid, desc, masks, hw = items[1]
    items[1] = (pid, desc + " Also [SEG] here.", masks + [masks[0]], hw)  # the model's bare [SEG] with its mask
    rows = [{"patch_id": p, "width": s[1], "height": s[0], "description": d,
             "phrases": [{"tag": t, "rle": m} for t, m in zip(
                 [x.text for x in gt_images()[p].phrases] + [""], ms)]} for p, d, ms, s in items]
    from tests.model.eval.evalkit import PRED_SCHEMA
    import pyarrow as pa
    from pipeline.contracts.shards import write_table

    write_table(pa.Table.from_pylist(rows, schema=PRED_SCHEMA), tmp_path / "pred.parquet")
    loaded = load([tmp_path / "pred.parquet"], "predictions", sizes={i: (100, 100) for i in SCENES})
    img = loaded.images[pid]
    assert [p.text for p in img.phrases][-1] == "" and len(img.phrases) == len(masks) + 1
    with pytest.raises(EvalInputError, match=f"image {pid}: 4 \\[SEG\\] but 3 `<p>"):  # ground truth stays strict
        load([tmp_path / "pred.parquet"], "ground truth", sizes={i: (100, 100) for i in SCENES})
