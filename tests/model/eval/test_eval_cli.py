"""`geopixeld eval` end to end: the table, the report files, bad input, and a generated split as ground truth."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from tests.model.eval.evalkit import SCENES, gcg_row, gt_images, scene_description, write_predictions, write_records

I1, I2 = sorted(SCENES)


def _invoke(args):
    return CliRunner().invoke(app, ["eval", *map(str, args)])


@pytest.fixture
def gt_folder(tmp_path):
    gt = gt_images()
    return write_records(tmp_path / "records", [gcg_row(gt[i], scene_description(i)) for i in SCENES])


def test_eval_prints_the_table_and_writes_every_report_file(java, embedder, gt_folder, tmp_path):
    gt = gt_images()
    items = [(I1, scene_description(I1, [0, 2]), [gt[I1].phrases[0].rle, gt[I1].phrases[2].rle], (100, 100)),
             (I2, scene_description(I2), [p.rle for p in gt[I2].phrases], (100, 100))]
    pred = write_predictions(tmp_path / "pred" / "predictions.parquet", items)
    res = _invoke([pred.parent, gt_folder, "--out", tmp_path / "rep", "--name", "tiny-run"])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "| GeoPixel (paper) | 21.6 | 24.0 | 19.0 | 52.3 | 38.8 |" in out
    assert "| GLaMM-FT (paper) | 15.7 | 23.0 | 12.5 | 46.4 | 32.8 |" in out
    assert "| **tiny-run** |" in out and "| multi-object | 2 |" in out
    rep = json.loads((tmp_path / "rep" / "eval.json").read_text())
    assert rep["name"] == "tiny-run" and rep["counts"]["images"] == 2 and rep["counts"]["gt_phrases"] == 6
    assert rep["metrics"]["recall"] == pytest.approx(500 / 6)  # one missing phrase of six
    assert rep["by_objects"]["multi"]["recall"] == pytest.approx(50.0)
    assert rep["reference"]["rows"]["GeoPixel (paper)"]["miou"] == 52.3
    assert rep["settings"]["embedder_kind"] == "sentence-transformers"
    md = (tmp_path / "rep" / "eval.md").read_text()
    assert md.startswith("# GCG evaluation: tiny-run") and "| Recall | P0001_0_100_0_100 (66.7)" in md
    per_image = pd.read_csv(tmp_path / "rep" / "per_image.csv")
    assert list(per_image["image_id"]) == [I1, I2] and list(per_image["recalled"]) == [2, 3]
    assert pq.read_table(tmp_path / "rep" / "per_image.parquet").num_rows == 2
    per_phrase = pd.read_csv(tmp_path / "rep" / "per_phrase.csv")
    assert len(per_phrase) == 6 and per_phrase["recalled"].sum() == 5
    assert per_phrase.loc[~per_phrase["recalled"], "phrase"].tolist() == ["small vehicles"]


def test_bad_predictions_exit_2_naming_the_image(gt_folder, tmp_path):
    gt = gt_images()
    pred = write_predictions(tmp_path / "p.parquet", [(I1, scene_description(I1), [p.rle for p in gt[I1].phrases],
                                                       (100, 100))])
    res = _invoke([pred, gt_folder])
    assert res.exit_code == 2
    assert f"image {I2}: in the ground truth" in res.output and "not in the predictions" in res.output
    assert "Traceback" not in res.output
    res = _invoke([pred, gt_folder, "--recall-matching", "best"])
    assert res.exit_code == 2 and "recall_matching" in res.output
    res = _invoke([pred, gt_folder, "--embedder", tmp_path / "no-model", "--missing-as-empty"])
    assert res.exit_code == 2 and "not a local folder" in res.output


@pytest.mark.slow
def test_a_generated_split_scored_against_its_perturbed_self_in_two_layouts(java, embedder, gp_demo, tmp_path):
    """Ground truth in two layouts (a build root's records and the GeoPixelD export of the same patches, from
    tests/model/data/make_records.py) and predictions made by perturbing it: the same numbers from both."""
    out = gp_demo / "out"
    records = [r for f in sorted((out / "val" / "records").glob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    assert len(records) >= 2
    items = []
    for k, r in enumerate(records):
        masks = [p["rle"] for p in r["phrases"]]
        desc = r["description"]
        if k == 0 and len(masks) >= 2:  # swap the first two masks
            masks[0], masks[1] = masks[1], masks[0]
        items.append((r["patch_id"], desc, masks, (r["height"], r["width"])))
    items[1] = (items[1][0], "", [], items[1][3])  # one empty prediction
    pred = write_predictions(tmp_path / "pred.parquet", items)
    a = _invoke([pred, out, "--split", "val", "--out", tmp_path / "a"])
    assert a.exit_code == 0, a.output
    b = _invoke([pred, gp_demo / "geopixeld", "--split", "val", "--out", tmp_path / "b"])
    assert b.exit_code == 0, b.output
    ra, rb = (json.loads((tmp_path / d / "eval.json").read_text()) for d in ("a", "b"))
    for key in ("meteor", "cider", "ap50", "miou", "recall"):
        assert ra["metrics"][key] == pytest.approx(rb["metrics"][key], abs=0.05), key
    assert 0 < ra["metrics"]["recall"] < 100 and 0 < ra["metrics"]["miou"] < 100
    assert ra["counts"]["images"] == len(records) and ra["counts"]["empty_predictions"] == 1
    per_image = pd.read_csv(tmp_path / "a" / "per_image.csv").set_index("image_id")
    assert per_image.loc[records[1]["patch_id"], "miou"] == 0.0
    assert per_image.loc[records[1]["patch_id"], "meteor"] == 0.0
