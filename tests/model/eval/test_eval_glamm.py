"""GLaMM's own files: its COCO ground-truth pair read as GLaMM's evaluator reads it, bad pairs refused naming the
file and the image, predictions keyed by file name, predictions whose phrase and mask counts differ
(--unmatched-masks), and the command end to end. Ground truth: tests/model/eval/evalkit.py's two scenes."""

from __future__ import annotations

import contextlib
import io
import json
import re

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from typer.testing import CliRunner

from model.eval.readers import load
from model.eval.run import EvalSettings, check_pairing, evaluate
from model.eval.types import EvalInputError
from pipeline.cli import app
from pipeline.contracts import masks as rle_ops
from tests.model.eval.evalkit import (SCENES, gcg_row, glamm_gt_dicts, gt_images, rle, scene_description,
                                      scene_image, write_glamm, write_glamm_gt, write_records)

I1, I2 = sorted(SCENES)
MASK_NAME, CAP_NAME = "val_gcg_coco_mask_gt.json", "val_gcg_coco_caption_gt.json"


@pytest.fixture
def gt_dir(tmp_path):
    write_glamm_gt(tmp_path / "gt", "val")
    return tmp_path / "gt"


def _glamm_preds(folder, images, phrases=None, masks=None):
    """GLaMM prediction JSONs of EvalImages; `phrases`/`masks` ({image: [index]}) pick what each file keeps."""
    for i, img in images.items():
        ph = [p.text for p in img.phrases]
        ms = [p.rle for p in img.phrases]
        ph = [ph[k] for k in (phrases or {}).get(i, range(len(ph)))]
        ms = [ms[k] for k in (masks or {}).get(i, range(len(ms)))]
        write_glamm(folder, i, img.caption, ph, ms)
    return folder


# ---------------------------------------------------------------- reading the pair


def test_the_pair_reads_as_glamms_evaluator_reads_it(tmp_path):
    """Masks in file order per image (GLaMM filters `coco_gt.anns.values()` by image_id), labels[i] with mask i."""
    mask_path, cap_path = write_glamm_gt(tmp_path / "gt", "val", interleave=True)
    got = load([tmp_path / "gt"], "ground truth", "val")
    want = gt_images()
    assert got.format == "glamm-coco" and got.sources == [str(mask_path), str(cap_path)]
    assert sorted(got.images) == [I1, I2]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(mask_path))
    for i in (I1, I2):
        img = got.images[i]
        assert (img.height, img.width, img.caption) == (100, 100, want[i].caption)
        assert [p.text for p in img.phrases] == [p.text for p in want[i].phrases]
        assert [p.rle for p in img.phrases] == [p.rle for p in want[i].phrases]
        assert all(p.objects is None for p in img.phrases)  # GLaMM's files hold no object count
        glamm = [mask_utils.decode(a["segmentation"]) for a in coco.anns.values() if a["image_id"] == i]
        ours = [rle_ops.decode(p.rle) for p in img.phrases]
        assert len(glamm) == len(ours) and all(np.array_equal(a, b) for a, b in zip(glamm, ours))


def test_the_pair_is_found_from_its_folder_or_either_file(gt_dir):
    mask_path, cap_path = gt_dir / MASK_NAME, gt_dir / CAP_NAME
    for paths, split in (([gt_dir], "val"), ([gt_dir], None), ([mask_path], None), ([cap_path], "val"),
                         ([mask_path, cap_path], None)):
        got = load(paths, "ground truth", split)
        assert got.format == "glamm-coco" and sorted(got.images) == [I1, I2], paths
        assert got.sources == [str(mask_path), str(cap_path)]
    write_glamm_gt(gt_dir, "test", [gt_images()[I2]])
    with pytest.raises(EvalInputError, match="splits test, val; choose one with --split"):
        load([gt_dir], "ground truth")
    assert list(load([gt_dir], "ground truth", "test").images) == [I2]
    with pytest.raises(EvalInputError, match="split\\(s\\) test, val but none of --split train"):
        load([gt_dir], "ground truth", "train")
    with pytest.raises(EvalInputError, match=f"{MASK_NAME}: GLaMM ground truth of split val, but --split is test"):
        load([mask_path], "ground truth", "test")


def test_a_missing_partner_is_refused_naming_it(gt_dir):
    (gt_dir / CAP_NAME).unlink()
    for path in (gt_dir, gt_dir / MASK_NAME):
        with pytest.raises(EvalInputError, match=f"{CAP_NAME} is missing \\(the caption file\\)"):
            load([path], "ground truth", "val")


def test_glamm_ground_truth_is_not_a_prediction_and_other_coco_files_get_a_hint(gt_dir, tmp_path):
    with pytest.raises(EvalInputError, match="GLaMM's ground-truth files .* cannot be the predictions"):
        load([gt_dir], "predictions", "val")
    other = tmp_path / "coco.json"
    other.write_text((gt_dir / MASK_NAME).read_text())
    with pytest.raises(EvalInputError, match="a COCO JSON is read as GLaMM's ground truth when named"):
        load([other], "ground truth")


def _drop_image(data, image_id):
    data["images"] = [i for i in data["images"] if i["id"] != image_id]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != image_id]


def _anns(data, image_id):
    return [a for a in data["annotations"] if a["image_id"] == image_id]


def _resize(mask, caption):
    _anns(mask, I1)[1]["segmentation"] = rle([(1, 1, 5, 5)], 200, 100)


def _two_captions(mask, caption):
    caption["annotations"].append(dict(_anns(caption, I1)[0], id=99))


BAD = [  # (what is wrong, change to (mask dict, caption dict), file named, message after "image <id>: ")
    ("caption image not in the mask file", lambda m, c: _drop_image(m, I2), CAP_NAME, f"{I2}: not in the mask file"),
    ("mask image not in the caption file", lambda m, c: _drop_image(c, I2), MASK_NAME, f"{I2}: not in the caption file"),
    ("fewer labels than masks", lambda m, c: _anns(c, I1)[0]["labels"].pop(), CAP_NAME, f"{I1}: 2 labels but 3 masks"),
    ("fewer masks than labels", lambda m, c: m["annotations"].remove(_anns(m, I2)[0]), CAP_NAME,
     f"{I2}: 3 labels but 2 masks"),
    ("corrupt RLE", lambda m, c: _anns(m, I1)[0]["segmentation"].update(counts="@@@@not-rle"), MASK_NAME,
     f"{I1}: mask 0: not a COCO RLE"),
    ("RLE of another size", _resize, MASK_NAME, f"{I1}: mask 1: is 200x100 \\(h x w\\) but the image is 100x100"),
    ("sizes of the two files differ", lambda m, c: c["images"][0].update(height=90), CAP_NAME,
     f"{I1}: 90x100 \\(h x w\\) but 100x100 in the mask file"),
    ("image without its size", lambda m, c: m["images"][1].pop("height"), MASK_NAME,
     f"{I2}: no positive integer height and width"),
    ("file names differ", lambda m, c: c["images"][1].update(file_name="x.jpg"), CAP_NAME,
     f"{I2}: file_name x.jpg but {I2}.jpg"),
    ("polygon", lambda m, c: _anns(m, I2)[2].update(segmentation=[[1, 1, 5, 1, 5, 5]]), MASK_NAME,
     f"{I2}: mask 2: the segmentation is not an RLE"),
    ("crowd region", lambda m, c: _anns(m, I1)[2].update(iscrowd=1), MASK_NAME, f"{I1}: mask 2: iscrowd 1"),
    ("another category", lambda m, c: _anns(m, I1)[0].update(category_id=2), MASK_NAME, f"{I1}: mask 0: category_id 2"),
    ("two captions", _two_captions, CAP_NAME, f"{I1}: 2 caption annotations, expected one"),
    ("no caption", lambda m, c: c["annotations"].pop(1), CAP_NAME, f"{I2}: 0 caption annotations"),
    ("no labels", lambda m, c: _anns(c, I2)[0].pop("labels"), CAP_NAME, f"{I2}: the caption annotation has no `labels`"),
    ("annotation id twice", lambda m, c: _anns(m, I2)[1].update(id=_anns(m, I1)[0]["id"]), MASK_NAME,
     f"{I2}: annotation id \\d+ is used twice"),
    ("image listed twice", lambda m, c: m["images"].append(dict(m["images"][0])), MASK_NAME,
     f"{I1} is listed twice"),
    ("annotation of an unlisted image", lambda m, c: m["annotations"].append(dict(_anns(m, I1)[0], image_id="P9",
                                                                                id=1)),
     MASK_NAME, "P9: annotations\\[6\\] is for an image missing from `images`"),
]


@pytest.mark.parametrize("change, named, message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_ground_truth_is_refused_naming_the_file_and_the_image(tmp_path, change, named, message):
    mask, caption = glamm_gt_dicts(list(gt_images().values()))
    change(mask, caption)
    write_glamm_gt(tmp_path / "gt", "val", mask=mask, caption=caption)
    with pytest.raises(EvalInputError) as err:
        load([tmp_path / "gt"], "ground truth", "val")
    assert len(err.value.problems) == 1, err.value.problems
    assert err.value.problems[0].startswith(str(tmp_path / "gt" / named)), err.value.problems
    assert re.search(f"image {message}", err.value.problems[0]), err.value.problems


def test_unreadable_or_non_coco_files_and_every_problem_listed(tmp_path):
    mask, caption = glamm_gt_dicts(list(gt_images().values()))
    write_glamm_gt(tmp_path / "gt", "val", mask={"images": []}, caption=caption)
    with pytest.raises(EvalInputError, match=f"{MASK_NAME}: not a COCO JSON"):
        load([tmp_path / "gt"], "ground truth", "val")
    (tmp_path / "gt" / CAP_NAME).write_text("{")
    with pytest.raises(EvalInputError, match=f"{CAP_NAME}: not readable JSON"):
        load([tmp_path / "gt"], "ground truth", "val")
    _anns(caption, I1)[0]["labels"].pop()
    _anns(mask, I2)[0]["segmentation"]["counts"] = "@@@@"
    write_glamm_gt(tmp_path / "gt", "val", mask=mask, caption=caption)
    with pytest.raises(EvalInputError) as err:
        load([tmp_path / "gt"], "ground truth", "val")
    assert len(err.value.problems) == 2 and I1 in err.value.problems[0] and I2 in err.value.problems[1]


def test_predictions_key_to_glamms_image_ids_by_file_name(tmp_path):
    gt = gt_images()
    mask, caption = glamm_gt_dicts(list(gt.values()))
    for data in (mask, caption):  # integer image ids, as a COCO export may write them
        for img in data["images"]:
            img["id"] = int(img["id"][1:5])
        for ann in data["annotations"]:
            ann["image_id"] = int(ann["image_id"][1:5])
    write_glamm_gt(tmp_path / "gt", "val", mask=mask, caption=caption)
    truth = load([tmp_path / "gt"], "ground truth", "val").images
    assert sorted(truth) == ["1", "2"]
    preds = tmp_path / "pred"
    write_glamm(preds, "1", gt[I1].caption, [p.text for p in gt[I1].phrases], [p.rle for p in gt[I1].phrases])
    (preds / "1.json").write_text(json.dumps(dict(json.loads((preds / "1.json").read_text()), image_id="1.jpg")))
    write_glamm(preds, "2", gt[I2].caption, [p.text for p in gt[I2].phrases], [p.rle for p in gt[I2].phrases])
    assert sorted(check_pairing(truth, load([preds], "predictions").images)) == ["1", "2"]
    (preds / "2.json").write_text(json.dumps(dict(json.loads((preds / "2.json").read_text()), image_id=7)))
    with pytest.raises(EvalInputError, match="2.json: image 2: its image_id is 7, but GLaMM's evaluator keys"):
        load([preds], "predictions")


# ---------------------------------------------------------------- phrase and mask counts that differ


def test_unequal_counts_are_refused_naming_the_option_or_paired_by_position(tmp_path):
    gt = gt_images()
    folder = _glamm_preds(tmp_path / "pred", gt, phrases={I1: [0, 1]}, masks={I2: [0, 1]})
    with pytest.raises(EvalInputError) as err:
        load([folder], "predictions")
    assert len(err.value.problems) == 2
    assert f"image {I1}: 2 phrases but 3 masks (pass --unmatched-masks" in err.value.problems[0]
    got = load([folder], "predictions", unmatched_masks=True)
    assert [p.text for p in got.images[I1].phrases] == ["tennis court", "small vehicles", ""]  # a mask, no phrase
    assert [p.rle for p in got.images[I1].phrases] == [p.rle for p in gt[I1].phrases]
    assert [p.text for p in got.images[I2].phrases] == ["storage tanks", "harbor"]  # "plane" had no mask
    (note,) = got.notes
    assert ("2 GLaMM predictions had phrases and pred_masks of different lengths (--unmatched-masks): 1 masks "
            "without a phrase scored as empty phrases") in note and "1 phrases without a mask left out" in note
    assert load([_glamm_preds(tmp_path / "even", gt)], "predictions", unmatched_masks=True).notes == []


@pytest.fixture
def score(java, embedder, gt_dir):
    def _score(pred_folder, gt_paths=(gt_dir,), **settings):
        return evaluate([pred_folder], list(gt_paths), EvalSettings(split="val", **settings), embedder)
    return _score


def test_unequal_counts_score_as_glamm_pairs_them(score, tmp_path):
    """Image 1 names 2 of its 3 masks (the ship's is unnamed), image 2 names 3 phrases with 2 masks (no plane)."""
    gt = gt_images()
    folder = _glamm_preds(tmp_path / "pred", gt, phrases={I1: [0, 1]}, masks={I2: [0, 1]})
    r = score(folder, unmatched_masks=True)
    assert r.metrics["ap50"] == pytest.approx(100 * 84 / 101)  # every mask scored: 5 of 6 true masks found
    assert r.metrics["miou"] == pytest.approx(100.0)  # the unnamed mask pairs with the ship
    assert [row["recalled"] for row in r.per_image] == [2, 2]  # the unnamed mask is never recalled
    assert r.metrics["recall"] == pytest.approx(400 / 6)
    assert r.counts["pred_phrases"] == 5
    assert any("1 masks without a phrase" in n for n in r.notes)
    lax = score(folder, unmatched_masks=True, similarity_threshold=-1.0)  # any named phrase passes, not an empty one
    assert [row["recalled"] for row in lax.per_image] == [2, 2]
    ship = [p for p in lax.per_phrase if p["image_id"] == I1][2]
    assert ship["pred_index"] == 2 and ship["pred_phrase"] == "" and ship["similarity"] is None
    # by position: "small vehicles" names the court's mask, "ship" the vehicles', so image 1 recalls nothing
    shifted = _glamm_preds(tmp_path / "shifted", gt, phrases={I1: [1, 2]})
    r = score(shifted, unmatched_masks=True, recall_matching="admissible")
    assert [row["recalled"] for row in r.per_image] == [0, 3] and r.metrics["miou"] == pytest.approx(100.0)


# ---------------------------------------------------------------- metrics against GLaMM's ground truth


def test_perfect_and_missing_phrase_against_glamm_ground_truth(score, tmp_path):
    gt = gt_images()
    r = score(_glamm_preds(tmp_path / "perfect", gt))
    for key in ("ap50", "miou", "recall", "meteor"):
        assert r.metrics[key] == pytest.approx(100.0), key
    assert r.counts["gt_phrases"] == 6 and r.counts["gt_unknown_objects"] == 6 and r.counts["gt_single"] == 0
    for grp in ("single", "multi"):  # no object count: only the overall columns apply (decision 8)
        assert r.by_objects[grp] == {"phrases": 0, "images": 0, "ap50": None, "miou": None, "recall": None}
    assert r.inputs["ground_truth_format"] == "glamm-coco"
    missing = score(_glamm_preds(tmp_path / "missing", gt, phrases={I1: [0, 2]}, masks={I1: [0, 2]}))
    assert missing.metrics["recall"] == pytest.approx(500 / 6)
    assert missing.metrics["ap50"] == pytest.approx(100 * 84 / 101)
    assert missing.metrics["miou"] == pytest.approx(100.0)
    assert [(p["image_id"], p["phrase"]) for p in missing.per_phrase if not p["recalled"]] == [(I1, "small vehicles")]


def test_glamm_ground_truth_and_our_records_give_the_same_numbers(score, tmp_path):
    gt = gt_images()
    records = write_records(tmp_path / "records", [gcg_row(gt[i], scene_description(i)) for i in SCENES])
    pred = {I1: scene_image(I1, order=[0, 2]), I2: scene_image(I2, masks_from=[1, 0, 2])}  # a missing phrase, a swap
    folder = _glamm_preds(tmp_path / "pred", pred)
    a, b = score(folder), score(folder, gt_paths=[records])
    assert a.inputs["ground_truth_format"] == "glamm-coco" and b.inputs["ground_truth_format"] == "parquet-records"
    assert a.metrics == pytest.approx(b.metrics, rel=1e-12)
    assert 0 < a.metrics["recall"] < 100 and a.metrics["ap50"] < 100
    cols = ["image_id", "meteor", "cider", "miou", "miou_strict", "recall", "recalled", "paired", "unpaired_pred"]
    assert [{c: r[c] for c in cols} for r in a.per_image] == [{c: r[c] for c in cols} for r in b.per_image]
    keep = ["image_id", "phrase", "pred_index", "iou", "similarity", "recalled"]
    assert [{c: p[c] for c in keep} for p in a.per_phrase] == [{c: p[c] for c in keep} for p in b.per_phrase]


# ---------------------------------------------------------------- the command


def _invoke(args):
    return CliRunner().invoke(app, ["eval", *map(str, args)])


def test_eval_command_with_glamm_files_end_to_end(java, embedder, gt_dir, tmp_path):
    gt = gt_images()
    folder = _glamm_preds(tmp_path / "pred", gt, phrases={I1: [0, 1]})
    res = _invoke([folder, gt_dir, "--split", "val"])
    assert res.exit_code == 2 and f"image {I1}: 2 phrases but 3 masks (pass --unmatched-masks" in res.output
    res = _invoke([folder, gt_dir, "--split", "val", "--unmatched-masks", "--out", tmp_path / "rep", "--name", "g"])
    assert res.exit_code == 0, res.output
    assert "| **g** |" in res.output and "| all | 6 |" in res.output
    rep = json.loads((tmp_path / "rep" / "eval.json").read_text())
    assert rep["inputs"]["ground_truth_format"] == "glamm-coco" and rep["inputs"]["prediction_format"] == "glamm-json"
    assert rep["settings"]["unmatched_masks"] is True and rep["counts"]["gt_unknown_objects"] == 6
    assert rep["metrics"]["recall"] == pytest.approx(500 / 6) and rep["metrics"]["ap50"] == pytest.approx(100.0)
    assert any("1 masks without a phrase scored as empty phrases" in n for n in rep["notes"])
    md = (tmp_path / "rep" / "eval.md").read_text()
    assert "6 of unknown object count" in md and "--unmatched-masks" in md
    (gt_dir / "val_gcg_coco_caption_gt.json").unlink()
    res = _invoke([folder, gt_dir / MASK_NAME, "--unmatched-masks"])
    assert res.exit_code == 2 and f"{CAP_NAME} is missing" in res.output and "Traceback" not in res.output
