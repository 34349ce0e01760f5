"""Every reader on the synthetic iSAID set: COCO JSON, mask-PNG pairs, devkit patches, generic COCO, GeoTIFF."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict

import numpy as np
import pyarrow.dataset as ds
import pytest
import rasterio

from pipeline.contracts import masks
from pipeline.contracts.quarantine import Quarantine
from pipeline.ingest import open_source
from pipeline.planning.stage import run_plan
from pipeline.contracts.tiling import parse_patch_name, tile_windows
from pipeline.synthetic.tiny_build import plan_config


def _rows(out, split="val"):
    return {r["patch_id"]: r for r in ds.dataset(out / split / "plans", format="parquet").to_table().to_pylist()}


def _category_masks(row):
    """Union mask per category of a plan row (ids differ between readers; pixels must not)."""
    acc = defaultdict(list)
    for o in row["objects"]:
        acc[o["category_id"]].append({"size": o["rle"]["size"], "counts": o["rle"]["counts"]})
    return {c: masks.union(r) for c, r in acc.items()}


def _assert_same_objects(a, b, min_iou):
    assert set(a) == set(b)
    for pid in a:
        ma, mb = _category_masks(a[pid]), _category_masks(b[pid])
        assert set(ma) == set(mb), pid
        for c in ma:
            assert masks.iou(ma[c], mb[c]) >= min_iou, (pid, c, masks.iou(ma[c], mb[c]))


def test_isaid_reader_finds_images_and_annotations(tiny_root):
    q = Quarantine()
    src = open_source(plan_config(tiny_root, tiny_root / "unused").source, q)
    assert not q.issues
    p3 = next(im for im in src.images if im.name == "P0003")
    assert (p3.width, p3.height) == (1147, 1023)
    data = json.loads((tiny_root / "val/Annotations/iSAID_val.json").read_text())
    assert sum(len(im.objects) for im in src.images) == len(data["annotations"])


def test_p0003_patch_names_match_geopixeld(tiny_root, tmp_path):
    names = {f"P0003_{w.y0}_{w.y1}_{w.x0}_{w.x1}" for w in tile_windows(1147, 1023)}
    assert {"P0003_0_800_347_1147", "P0003_223_1023_0_800"} <= names and len(names) == 4
    out = tmp_path / "out"
    run_plan(plan_config(tiny_root, out), progress=False)
    planned = {pid for pid in _rows(out) if pid.startswith("P0003")}
    assert planned and planned <= names
    for pid in planned:
        stem, win = parse_patch_name(pid)
        assert stem == "P0003" and (win.width, win.height) == (800, 800)


def test_mask_png_reader_agrees_with_coco_json(tiny_root, tmp_path):
    run_plan(plan_config(tiny_root, tmp_path / "json"), progress=False)
    run_plan(plan_config(tiny_root, tmp_path / "png", source={"format": "isaid-masks"}), progress=False)
    _assert_same_objects(_rows(tmp_path / "json"), _rows(tmp_path / "png"), min_iou=0.9)


def test_devkit_patches_with_json_and_with_masks(tiny_root, tmp_path):
    patches_root = tiny_root / "patches"
    run_plan(plan_config(tiny_root, tmp_path / "whole"), progress=False)
    run_plan(plan_config(patches_root, tmp_path / "pj", source={"format": "isaid-patches"}), progress=False)
    whole, pj = _rows(tmp_path / "whole"), _rows(tmp_path / "pj")
    assert pj and set(pj) <= set(whole) | {r for r in pj if "_" not in r}
    for pid, row in pj.items():
        parsed = parse_patch_name(pid)
        if parsed:
            assert row["window"] == [parsed[1].x0, parsed[1].y0, parsed[1].x1, parsed[1].y1]
            assert row["source_image"] == parsed[0]
    # the devkit's contour polygons approximate the masks: same categories, close pixels
    for pid in set(pj) & set(whole):
        a, b = _category_masks(whole[pid]), _category_masks(pj[pid])
        for c in set(a) & set(b):
            assert masks.iou(a[c], b[c]) > 0.8, (pid, c)
    # the same patches read from their mask PNGs alone
    masks_only = tmp_path / "masks_only"
    shutil.copytree(patches_root, masks_only)
    for j in masks_only.rglob("*.json"):
        j.unlink()
    run_plan(plan_config(masks_only, tmp_path / "pm", source={"format": "isaid-patches"}), progress=False)
    pm = _rows(tmp_path / "pm")
    for pid in set(pm) & set(whole):
        a, b = _category_masks(whole[pid]), _category_masks(pm[pid])
        assert set(a) == set(b)
        for c in a:
            assert masks.iou(a[c], b[c]) > 0.9


def test_generic_coco_with_category_map(tiny_root, tmp_path):
    data = json.loads((tiny_root / "val/Annotations/iSAID_val.json").read_text())
    for c in data["categories"]:
        c["id"] += 100
        c["name"] = "src_" + c["name"]
    for a in data["annotations"]:
        a["category_id"] += 100
    root = tmp_path / "coco"
    shutil.copytree(tiny_root / "val/images", root / "imgs")
    (root / "ann.json").write_text(json.dumps(data))
    vehicles = {"src_Small_Vehicle": "vehicle", "108": "vehicle"}
    cfg = plan_config(root, tmp_path / "out", source={
        "format": "coco", "annotations": "ann.json", "images": "imgs",
        "categories": [{"id": 1, "name": "vehicle", "plural": "vehicles", "tier": "group"},
                       {"id": 2, "name": "court", "tier": "instance"}],
        "category_map": {**vehicles, "src_tennis_court": "court", "src_basketball_court": "court"},
    })
    summary = run_plan(cfg, progress=False)
    cats = {o["category"] for r in _rows(tmp_path / "out").values() for o in r["objects"]}
    assert cats and cats <= {"vehicle", "court"}
    n_vehicle_src = sum(a["category_id"] in (108, 109) for a in data["annotations"])
    unknown = [i for i in summary.issues if i.kind == "category-unknown"]
    mapped = {108, 109, 104, 105}
    assert len(unknown) == sum(a["category_id"] not in mapped for a in data["annotations"])
    assert n_vehicle_src > 0


def test_unknown_map_target_is_refused(tiny_root, tmp_path):
    from pipeline.ingest import SourceError

    cfg = plan_config(tiny_root, tmp_path / "o", source={"format": "coco", "annotations": "val/Annotations/iSAID_val.json",
                                                           "category_map": {"1": "spaceship"}})
    with pytest.raises(SourceError, match="spaceship"):
        run_plan(cfg, progress=False)


def test_geotiff_keeps_crs_and_patch_transforms(tiny_geotiff_root, tmp_path):
    out = tmp_path / "out"
    run_plan(plan_config(tiny_geotiff_root, out), progress=False)
    rows = _rows(out)
    assert rows
    for row in rows.values():
        src = tiny_geotiff_root / row["source_path"]
        with rasterio.open(src) as f:
            t, crs = f.transform, f.crs
        assert row["crs"] == crs.to_wkt()
        x0, y0 = row["window"][:2]
        expected = t @ rasterio.Affine.translation(x0, y0)
        assert np.allclose(row["transform"], [expected.a, expected.b, expected.c, expected.d, expected.e, expected.f])


def test_release_folder_without_json_is_read_from_its_mask_pngs(tiny_root, tmp_path):
    """`geopixeld plan ROOT OUT --split val` on the mask-PNG layout of the release needs no --format."""
    root = tmp_path / "masks_only"
    shutil.copytree(tiny_root / "val", root / "val")
    (root / "val/Annotations/iSAID_val.json").unlink()
    run_plan(plan_config(root, tmp_path / "png"), progress=False)
    run_plan(plan_config(tiny_root, tmp_path / "json"), progress=False)
    _assert_same_objects(_rows(tmp_path / "json"), _rows(tmp_path / "png"), min_iou=0.9)


def test_coco_rle_segmentations_plan_like_polygons(tiny_root, tmp_path):
    """Generic COCO datasets may carry RLE masks (iscrowd objects): they plan to the same pixels."""
    from pycocotools import mask as M

    data = json.loads((tiny_root / "val/Annotations/iSAID_val.json").read_text())
    size = {im["id"]: (im["height"], im["width"]) for im in data["images"]}
    for a in data["annotations"][::2]:
        h, w = size[a["image_id"]]
        rle = M.merge(M.frPyObjects(a["segmentation"], h, w))
        a["segmentation"] = {"size": [h, w], "counts": rle["counts"].decode()}
        a["iscrowd"] = 1
    root = tmp_path / "coco"
    shutil.copytree(tiny_root / "val/images", root / "val/images")
    (root / "val/Annotations").mkdir(parents=True)
    (root / "val/Annotations/iSAID_val.json").write_text(json.dumps(data))
    run_plan(plan_config(root, tmp_path / "rle"), progress=False)
    run_plan(plan_config(tiny_root, tmp_path / "poly"), progress=False)
    # pycocotools rasterises polygons a little thinner than OpenCV (right and bottom edges), which tells on
    # small objects such as pools: the same objects, close pixels
    _assert_same_objects(_rows(tmp_path / "poly"), _rows(tmp_path / "rle"), min_iou=0.85)


@pytest.mark.parametrize("categories, says", [
    ([{"id": 1, "name": "person"}], "'person', not a category of the vocabulary"),
    ([{"id": 4, "name": "ship"}], "category id 4 is 'ship' there but 'tennis_court'"),
    ([{"id": 99, "name": "ship"}], "none of its 1 category ids"),
])
def test_categories_of_another_vocabulary_are_refused_without_a_map(tmp_path, categories, says):
    """No silent fallback: without `category_map`, ids are taken as the vocabulary's only where the names agree."""
    from pipeline.contracts.config import SourceConfig
    from pipeline.ingest import SourceError

    (tmp_path / "images").mkdir()
    (tmp_path / "ann.json").write_text(json.dumps({"images": [], "annotations": [], "categories": categories}))
    cfg = SourceConfig(root=tmp_path, split="val", format="coco", annotations="ann.json", images="images")
    with pytest.raises(SourceError, match="category_map") as err:
        open_source(cfg, Quarantine())
    assert says in str(err.value) and str(tmp_path / "ann.json") in str(err.value)


def test_agreeing_categories_and_a_file_without_categories_are_taken_at_their_ids():
    from pipeline.contracts.categories import ISAID
    from pipeline.ingest.coco import identity_categories

    assert identity_categories({1: {"id": 1, "name": "ship"}, 4: {"id": 4, "name": "Tennis_Court"}}, ISAID, "f") == {1: 1, 4: 4}
    assert identity_categories({}, ISAID, "f") == {c.id: c.id for c in ISAID.categories}
