"""The synthetic iSAID-format generator: layout, determinism, and masks that agree with the JSON."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from shapely.geometry import Polygon

from pipeline.contracts.categories import ISAID_CATEGORIES
from pipeline.synthetic.isaid import SCALES, generate
from pipeline.contracts.tiling import tile_windows

COLOUR = {c.id: c.color for c in ISAID_CATEGORIES}
P0003_PATCHES = {"P0003_0_800_0_800", "P0003_0_800_347_1147", "P0003_223_1023_0_800", "P0003_223_1023_347_1147"}


def load(root: Path, split: str) -> dict:
    return json.loads((root / split / "Annotations" / f"iSAID_{split}.json").read_text())


def decode_ids(path: Path) -> np.ndarray:
    """cv2 gives BGR; the id is R + 256 G + 65536 B."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR).astype(np.int64)
    return bgr[..., 2] + 256 * bgr[..., 1] + 65536 * bgr[..., 0]


def rasterise(segmentation: list, hw: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(hw, dtype=np.uint8)
    cv2.fillPoly(mask, [np.asarray(p, dtype=np.int32).reshape(-1, 2) for p in segmentation], 1)
    return mask.astype(bool)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def per_image(data: dict) -> list[tuple[dict, list[dict]]]:
    anns: dict[int, list[dict]] = {}
    for a in data["annotations"]:
        anns.setdefault(a["image_id"], []).append(a)
    return [(im, anns.get(im["id"], [])) for im in data["images"]]


def test_layout_names_and_sizes(tiny_root):
    train, val = load(tiny_root, "train"), load(tiny_root, "val")
    assert [im["file_name"] for im in train["images"]] == ["P0000.png", "P0001.png", "P0002.png"]
    assert [im["file_name"] for im in val["images"]] == ["P0003.png", "P0004.png", "P0005.png"]
    p3 = val["images"][0]
    assert (p3["id"], p3["width"], p3["height"]) == (3, 1147, 1023)
    assert cv2.imread(str(tiny_root / "val/images/P0003.png")).shape == (1023, 1147, 3)
    assert any(min(im["width"], im["height"]) <= 800 for im in val["images"])  # kept whole by the tiler
    assert [(c["id"], c["name"]) for c in val["categories"]] == [(c.id, c.name) for c in ISAID_CATEGORIES]
    for split, data in (("train", train), ("val", val)):
        for im, anns in per_image(data):
            stem = im["file_name"][:-4]
            for suffix in ("_instance_id_RGB.png", "_instance_color_RGB.png"):
                assert (tiny_root / split / "images" / f"{stem}{suffix}").is_file()
            assert 15 <= len(anns) <= 200, (stem, len(anns))
        ids = [a["id"] for a in data["annotations"]]
        assert len(ids) == len(set(ids))
        assert all(a["iscrowd"] == 0 and a["category_id"] in COLOUR for a in data["annotations"])


def test_same_seed_gives_identical_files_whatever_the_workers(tiny_root, tmp_path):
    counts = generate(tmp_path, scale="tiny", seed=0, splits=("val",), workers=2, progress=False)
    assert counts == {"val": {"images": 3, "instances": len(load(tiny_root, "val")["annotations"])}}
    rel = "val/Annotations/iSAID_val.json"
    assert (tmp_path / rel).read_bytes() == (tiny_root / rel).read_bytes()
    pngs = sorted(p.name for p in (tmp_path / "val/images").iterdir())
    assert len(pngs) == 9
    for name in pngs:
        a = cv2.imread(str(tmp_path / "val/images" / name), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(tiny_root / "val/images" / name), cv2.IMREAD_UNCHANGED)
        assert a.shape == b.shape and np.array_equal(a, b), name


def test_another_seed_gives_other_scenes(tiny_root, tiny_geotiff_root):
    seed0, seed1 = load(tiny_root, "val"), load(tiny_geotiff_root, "val")
    assert [im["width"] for im in seed0["images"]] == [im["width"] for im in seed1["images"]]  # tiny sizes are fixed
    assert [a["segmentation"] for a in seed0["annotations"]] != [a["segmentation"] for a in seed1["annotations"]]


@pytest.mark.parametrize("split", ["train", "val"])
def test_id_png_holds_exactly_the_annotations(tiny_root, split):
    for im, anns in per_image(load(tiny_root, split)):
        ids = decode_ids(tiny_root / split / "images" / (im["file_name"][:-4] + "_instance_id_RGB.png"))
        assert ids.shape == (im["height"], im["width"])
        assert set(np.unique(ids).tolist()) - {0} == {a["id"] for a in anns}
        assert min(a["id"] for a in anns) >= 1000  # the devkit skips instance ids below 1000


@pytest.mark.parametrize("split", ["train", "val"])
def test_polygons_rasterise_to_their_id_pixels(tiny_root, split):
    ious = []
    for im, anns in per_image(load(tiny_root, split)):
        hw = (im["height"], im["width"])
        ids = decode_ids(tiny_root / split / "images" / (im["file_name"][:-4] + "_instance_id_RGB.png"))
        for a in anns:
            pts = np.asarray(a["segmentation"][0], dtype=float).reshape(-1, 2)
            assert len(pts) >= 3 and pts.min() >= 0 and pts[:, 0].max() <= hw[1] - 1 and pts[:, 1].max() <= hw[0] - 1
            assert Polygon(pts).is_valid, a["id"]
            painted = ids == a["id"]
            assert a["area"] == int(painted.sum())
            x, y, w, h = a["bbox"]
            ys, xs = np.nonzero(painted)
            assert (xs.min(), ys.min(), xs.max(), ys.max()) == (x, y, x + w, y + h)
            ious.append(iou(rasterise(a["segmentation"], hw), painted))
    assert min(ious) > 0.9 and np.mean(ious) > 0.99


@pytest.mark.parametrize("split", ["train", "val"])
def test_colour_png_paints_each_instance_in_its_class_colour(tiny_root, split):
    for im, anns in per_image(load(tiny_root, split)):
        stem = tiny_root / split / "images" / im["file_name"][:-4]
        ids = decode_ids(Path(f"{stem}_instance_id_RGB.png"))
        rgb = cv2.cvtColor(cv2.imread(f"{stem}_instance_color_RGB.png"), cv2.COLOR_BGR2RGB)
        assert not rgb[ids == 0].any()  # background stays black
        for a in anns:
            colours = np.unique(rgb[ids == a["id"]], axis=0)
            assert colours.tolist() == [list(COLOUR[a["category_id"]])], a["id"]


def test_every_category_appears_and_some_shapes_are_concave(tiny_root):
    anns = load(tiny_root, "train")["annotations"] + load(tiny_root, "val")["annotations"]
    assert {a["category_id"] for a in anns} == set(COLOUR)
    by_cat: dict[int, list[Polygon]] = {}
    for a in anns:
        by_cat.setdefault(a["category_id"], []).append(Polygon(np.reshape(a["segmentation"][0], (-1, 2))))
    for cat in (12, 14, 10):  # roundabout (C-shaped ring), plane and helicopter (crosses)
        assert all(p.area < 0.9 * p.convex_hull.area for p in by_cat[cat]), cat
    assert len(by_cat[9]) >= 30  # small vehicles are common


def test_some_objects_straddle_patch_borders(tiny_root):
    data = load(tiny_root, "val")
    im, anns = per_image(data)[0]
    cuts = {w.x0 for w in tile_windows(im["width"], im["height"])} | {w.x1 for w in tile_windows(im["width"], im["height"])}
    cuts -= {0, im["width"]}
    assert any(a["bbox"][0] < c < a["bbox"][0] + a["bbox"][2] for a in anns for c in cuts)


def test_geotiff_images_carry_crs_and_transform(tiny_geotiff_root):
    rasterio = pytest.importorskip("rasterio")
    data = load(tiny_geotiff_root, "val")
    assert [im["file_name"] for im in data["images"]] == ["P0003.tif", "P0004.tif", "P0005.tif"]
    assert not (tiny_geotiff_root / "train").exists()
    for im in data["images"]:
        path = tiny_geotiff_root / "val/images" / im["file_name"]
        with rasterio.open(path) as src:
            assert (src.count, src.dtypes[0], src.width, src.height) == (3, "uint8", im["width"], im["height"])
            assert src.crs is not None and src.crs.to_epsg() == 32633
            t = src.transform
            assert t.a > 0 and t.e < 0 and t.b == t.d == 0 and t.c > 100_000 and t.f > 1_000_000
            assert src.read().std() > 5  # a picture, not a blank raster
        assert (tiny_geotiff_root / "val/images" / (im["file_name"][:-4] + "_instance_id_RGB.png")).is_file()


def test_devkit_patches_for_p0003(tiny_root):
    images = tiny_root / "patches/val/images"
    data = load(tiny_root / "patches", "val")
    names = [im["file_name"][:-4] for im in data["images"]]
    assert set(n for n in names if n.startswith("P0003")) == P0003_PATCHES
    assert "P0004" in names  # 700 x 900: kept whole under its own name
    assert len(names) == len(set(names)) == len([p for p in images.iterdir() if "_instance_" not in p.name])
    full_ids = decode_ids(tiny_root / "val/images/P0003_instance_id_RGB.png")
    ann_ids = [a["id"] for a in data["annotations"]]
    assert len(ann_ids) == len(set(ann_ids))
    for im, anns in per_image(data):
        name = im["file_name"][:-4]
        if not name.startswith("P0003"):
            continue
        y0, y1, x0, x1 = (int(v) for v in name.split("_")[1:])
        assert (im["width"], im["height"]) == (800, 800) == (x1 - x0, y1 - y0)
        ids = decode_ids(images / f"{name}_instance_id_RGB.png")
        assert np.array_equal(ids, full_ids[y0:y1, x0:x1])
        colour = cv2.cvtColor(cv2.imread(str(images / f"{name}_instance_color_RGB.png")), cv2.COLOR_BGR2RGB)
        assert cv2.imread(str(images / f"{name}.png")).shape == (800, 800, 3)
        # contour polygons cover each class's pixels in the patch (slivers the devkit drops aside)
        for cat in {a["category_id"] for a in anns}:
            drawn = np.zeros((800, 800), dtype=bool)
            for a in anns:
                if a["category_id"] == cat:
                    drawn |= rasterise(a["segmentation"], (800, 800))
            assert iou(drawn, (colour == COLOUR[cat]).all(axis=-1)) > 0.9, (name, cat)
        assert len(anns) >= len(np.unique(ids)) - 1 - 3  # at most a few slivers left out


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="scale"):
        generate(tmp_path, scale="huge", progress=False)
    with pytest.raises(ValueError, match="split"):
        generate(tmp_path, scale="tiny", splits=("test",), progress=False)


def test_isaid_scale_is_split_like_isaid():
    counts = SCALES["isaid"].split_counts()
    assert sum(counts.values()) == 1400 and counts["train"] == 2 * counts["val"] - 1
    assert SCALES["small"].split_counts() == {"train": 12, "val": 12}
