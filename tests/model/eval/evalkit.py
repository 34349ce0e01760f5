"""Builders of tiny evaluation inputs: rectangle masks, scenes with hand-known IoUs, and files in every format.

The hand-computed cases use two 100x100 images, three phrases each (two single-object, one multi-object with
two members), disjoint masks, so every IoU is 0 or 1 unless a case shifts a mask on purpose.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
from pycocotools import mask as mask_utils

from model.eval.types import EvalImage, EvalPhrase, caption_text, phrases_of
from pipeline.contracts import masks as rle_ops
from pipeline.contracts.gcg_schema import GCG_SCHEMA
from pipeline.contracts.shards import write_table

H = W = 100


def rect_mask(boxes: list[tuple[int, int, int, int]], h: int = H, w: int = W) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    for x0, y0, x1, y1 in boxes:
        m[y0:y1, x0:x1] = 1
    return m


def rle(boxes: list[tuple[int, int, int, int]], h: int = H, w: int = W) -> dict:
    return rle_ops.from_coco(mask_utils.encode(np.asfortranarray(rect_mask(boxes, h, w))))


# (tag, boxes, objects, sentence): the sentence holds {p} where the phrase goes
SCENES = {
    "P0001_0_100_0_100": ("An aerial view of a quiet sports park beside a river.", [
        ("tennis court-1", [(10, 10, 30, 30)], 1, "The {p} at the top left has a green surface and white lines."),
        ("small vehicles-1", [(50, 50, 60, 60), (70, 50, 80, 60)], 2, "The {p} are parked in a neat row near the road."),
        ("ship-1", [(10, 60, 30, 90)], 1, "A {p} is moored along the western quay."),
    ]),
    "P0002_0_100_0_100": ("A busy harbour with storage tanks and a long pier at noon.", [
        ("storage tanks-1", [(5, 5, 15, 15), (20, 5, 30, 15)], 2, "Two white {p} stand together near the shore."),
        ("harbor-1", [(40, 40, 90, 60)], 1, "The {p} stretches across the middle of the scene."),
        ("plane-1", [(60, 70, 80, 95)], 1, "One {p} waits on the apron in the south."),
    ]),
}


def description(holistic: str, phrases: list[tuple[str, str]]) -> str:
    """phrases: (tag, sentence with {p}) -> a grounded description with `<p> tag </p> [SEG]`."""
    return " ".join([holistic] + [s.format(p=f"<p> {tag} </p> [SEG]") for tag, s in phrases])


def scene_image(image_id: str, order: list[int] | None = None, masks_from: list[int] | None = None,
                boxes_override: dict[int, list] | None = None) -> EvalImage:
    """An EvalImage of a scene: `order` picks (and may repeat) phrases; `masks_from[k]` takes phrase k's mask
    from another phrase (a swap); `boxes_override` moves a phrase's mask."""
    holistic, phrases = SCENES[image_id]
    order = list(range(len(phrases))) if order is None else order
    masks_from = masks_from or order
    boxes_override = boxes_override or {}
    desc = description(holistic, [(phrases[k][0], phrases[k][3]) for k in order])
    texts, _ = phrases_of(desc)
    out = []
    for text, k, src in zip(texts, order, masks_from):
        out.append(EvalPhrase(text, rle(boxes_override.get(src, phrases[src][1])), phrases[k][2]))
    return EvalImage(image_id, H, W, caption_text(desc), out, "test")


def empty_image(image_id: str) -> EvalImage:
    return EvalImage(image_id, H, W, "", [], "test")


def gt_images() -> dict[str, EvalImage]:
    return {i: scene_image(i) for i in SCENES}


# ---------------------------------------------------------------- files


def gcg_row(img: EvalImage, desc: str, status: str = "ok", curation: str = "pending") -> dict:
    """A full GCG record row (pipeline.contracts.gcg_schema.GCGRecord) of an image, as the drafting stage writes it."""
    from pipeline.contracts.gcg_schema import GCGRecord, Phrase

    texts, _ = phrases_of(desc)
    phrases = [Phrase(t, 0, 0, "group" if (p.objects or 1) > 1 else "instance", "x", list(range(p.objects or 1)),
                      p.rle) for t, p in zip(texts, img.phrases)]
    return GCGRecord(img.image_id, "val", None, img.width, img.height, description=desc, phrases=phrases,
                     holistic="", status=status, curation_status=curation).to_row()


def scene_description(image_id: str, order: list[int] | None = None) -> str:
    holistic, phrases = SCENES[image_id]
    order = list(range(len(phrases))) if order is None else order
    return description(holistic, [(phrases[k][0], phrases[k][3]) for k in order])


def write_records(folder: Path, rows: list[dict], name: str = "records-00000.parquet") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_table(pa.Table.from_pylist(rows, schema=GCG_SCHEMA), folder / name)
    return folder


PRED_SCHEMA = pa.schema([  # the columns `geopixeld predict` writes (a subset of the GCG schema)
    ("patch_id", pa.string()), ("width", pa.int32()), ("height", pa.int32()), ("description", pa.string()),
    ("phrases", pa.list_(pa.struct([("tag", pa.string()), ("rle", GCG_SCHEMA.field("phrases").type.value_type.field("rle").type)]))),
])


def write_predictions(path: Path, items: list[tuple[str, str | None, list[dict], tuple[int, int]]]) -> Path:
    """items: (patch_id, description, masks, (h, w)) -> one Parquet file with the prediction columns."""
    rows = [{"patch_id": pid, "width": hw[1], "height": hw[0], "description": desc,
             "phrases": [{"tag": None, "rle": m} for m in masks]} for pid, desc, masks, hw in items]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_table(pa.Table.from_pylist(rows, schema=PRED_SCHEMA), path)
    return path


def write_glamm(folder: Path, image_id: str, caption: str, phrases: list[str], masks: list[dict],
                wrapped: bool = False, uncompressed: bool = False) -> Path:
    """One GLaMM prediction JSON ({image_id, caption, phrases, pred_masks}), as its infer.py writes it."""
    if uncompressed:  # GLaMM's mask_to_rle_* output before coco_encode_rle
        masks = [_uncompressed(m) for m in masks]
    body = {"image_id": image_id, "caption": caption, "phrases": phrases, "pred_masks": masks}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{image_id}.json"
    path.write_text(json.dumps({image_id: body} if wrapped else body))
    return path


def _uncompressed(r: dict) -> dict:
    flat = rle_ops.decode(r).ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate(([0], change, [flat.size]))).tolist()
    return {"size": r["size"], "counts": ([0] if flat[0] else []) + runs}


def write_geopixeld(folder: Path, split: str, images: list[tuple[EvalImage, str]], with_png: bool = True) -> Path:
    """The released layout (index + per-patch JSONs with polygons), via the project's own exporter."""
    from pipeline.contracts.geopixeld_format import released_record
    from pipeline.release.geopixeld import write_released

    items = []
    for k, (img, desc) in enumerate(images):
        index, per_patch = released_record(k, img.image_id, desc, [rle_ops.decode(p.rle) for p in img.phrases],
                                           "data/GeoPixelD", split)
        items.append((index, per_patch, None))
    path = write_released(folder, split, items)
    if with_png:
        import cv2

        for img, _ in images:
            cv2.imwrite(str(folder / split / f"{img.image_id}.png"), np.zeros((img.height, img.width, 3), np.uint8))
    return path


def glamm_gt_dicts(images: list[EvalImage], interleave: bool = False) -> tuple[dict, dict]:
    """GLaMM's GCG ground truth of `images` as (mask file, caption file) COCO dicts: one annotation per phrase
    mask, encoded by pycocotools, with GranD-f's `images` fields; `labels` in mask order. Annotation ids count
    down while the file order goes up, so a reader that sorted by id would reverse each image's masks;
    `interleave` alternates the images' annotations in the file."""
    imgs = [{"id": i.image_id, "file_name": f"{i.image_id}.jpg", "height": i.height, "width": i.width} for i in images]
    per_image = [[(img, ph) for ph in img.phrases] for img in images]
    if interleave:  # round robin: the first mask of each image, then the second of each, ...
        depth = max(map(len, per_image), default=0)
        order = [pi[k] for k in range(depth) for pi in per_image if k < len(pi)]
    else:
        order = [x for pi in per_image for x in pi]
    anns = []
    for n, (img, ph) in enumerate(order):
        enc = mask_utils.encode(np.asfortranarray(rle_ops.decode(ph.rle)))
        anns.append({"id": 10_000 - n, "image_id": img.image_id, "category_id": 1, "iscrowd": 0,
                     "segmentation": {"size": [int(v) for v in enc["size"]], "counts": enc["counts"].decode("ascii")},
                     "area": float(mask_utils.area(enc)), "bbox": mask_utils.toBbox(enc).tolist()})
    mask = {"images": imgs, "annotations": anns, "categories": [{"id": 1, "name": "object"}]}
    caption = {"images": [dict(i) for i in imgs],
               "annotations": [{"id": n + 1, "image_id": i.image_id, "caption": i.caption,
                                "labels": [p.text for p in i.phrases]} for n, i in enumerate(images)]}
    return mask, caption


def write_glamm_gt(folder: Path, split: str, images: list[EvalImage] | None = None, mask: dict | None = None,
                   caption: dict | None = None, interleave: bool = False) -> tuple[Path, Path]:
    """GLaMM's `<split>_gcg_coco_mask_gt.json` and `<split>_gcg_coco_caption_gt.json` (of `images`, or the given
    dicts) in `folder`; returns (mask path, caption path)."""
    if mask is None or caption is None:
        mask, caption = glamm_gt_dicts(images if images is not None else list(gt_images().values()), interleave)
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / f"{split}_gcg_coco_mask_gt.json", folder / f"{split}_gcg_coco_caption_gt.json"
    for path, data in zip(paths, (mask, caption)):
        path.write_text(json.dumps(data))
    return paths


__all__ = ["H", "W", "SCENES", "rle", "rect_mask", "scene_image", "empty_image", "gt_images", "gcg_row",
           "scene_description", "write_records", "write_predictions", "write_glamm", "write_geopixeld",
           "glamm_gt_dicts", "write_glamm_gt"]
