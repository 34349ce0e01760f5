"""COCO-style JSON (iSAID's release, or any COCO aerial dataset) -> checked `SourceImage`s."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.contracts.categories import Vocabulary
from pipeline.contracts.config import SourceConfig
from pipeline.contracts.geometry import GeometryError, parse_coco_polygons
from pipeline.contracts.fileio import UnsafePath, resolve_inside
from pipeline.contracts.quarantine import Issue, Quarantine
from pipeline.contracts.records import SourceImage, SourceObject
from pipeline.ingest.source import SourceError


def load_json(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            data = json.load(fh)
    except FileNotFoundError as exc:
        raise SourceError(f"{path}: annotation file not found") from exc
    except (OSError, ValueError) as exc:
        raise SourceError(f"{path}: cannot read annotation JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise SourceError(f"{path}: not a COCO annotation file (no `images` list)")
    if not isinstance(data.get("annotations", []), list) or not isinstance(data.get("categories", []), list):
        raise SourceError(f"{path}: `annotations` and `categories` must be lists")
    return data


def category_resolver(data: dict, vocab: Vocabulary, cfg: SourceConfig) -> dict[int, int]:
    """Source category id -> vocabulary id. Without a map, ids must match the vocabulary."""
    cats = {c.get("id"): c for c in data.get("categories", []) if isinstance(c, dict)}
    if cfg.category_map is None:
        return {cid: cid for cid in cats if cid in vocab} or {c.id: c.id for c in vocab.categories}
    out = {}
    for key, target in cfg.category_map.items():
        cat = vocab.lookup(target)
        if cat is None:
            raise SourceError(f"category_map: {target!r} is not a category of the vocabulary")
        for cid, c in cats.items():
            if key == str(cid) or key == c.get("name"):
                out[cid] = cat.id
    return out


def read_coco(root: Path, ann_rel: str, img_rel: str, vocab: Vocabulary, cfg: SourceConfig, q: Quarantine,
              tol: float = 2.0) -> list[SourceImage]:
    """Parse and check a COCO JSON; `tol`: how far (px) a polygon point may lie outside its image."""
    json_path = resolve_inside(root, ann_rel)
    data = load_json(json_path)
    fname = str(json_path)
    cat_of = category_resolver(data, vocab, cfg)
    images: dict[int, SourceImage] = {}
    for rec in data["images"]:
        img = _image(rec, root, img_rel, fname, q)
        if img is None:
            continue
        if img.image_id in images:
            q.report(Issue("duplicate-image-id", fname, f"image id {img.image_id} appears twice; the second entry "
                           f"({img.rel_path}) is skipped", image=img.name))
            continue
        images[img.image_id] = img
    seen: set[int] = set()
    for ann in data.get("annotations", []):
        obj = _annotation(ann, images, cat_of, seen, fname, q, tol)
        if obj is not None:
            images[ann["image_id"]].objects.append(obj)
    return list(images.values())


def _image(rec, root: Path, img_rel: str, fname: str, q: Quarantine) -> SourceImage | None:
    if not isinstance(rec, dict) or not isinstance(rec.get("file_name"), str):
        q.report(Issue("image-record-invalid", fname, f"image entry without a file_name: {str(rec)[:120]}"))
        return None
    name = rec["file_name"]
    image_id = rec.get("id")
    if not isinstance(image_id, int) or isinstance(image_id, bool):
        q.report(Issue("image-record-invalid", fname, f"image {name!r} has no integer id", image=name))
        return None
    w, h = rec.get("width"), rec.get("height")
    if not (isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0):
        q.report(Issue("image-size-invalid", fname, f"width/height must be positive integers, got {w!r}x{h!r}", image=name))
        return None
    rel = f"{img_rel}/{name}" if img_rel not in ("", ".") else name
    try:
        if Path(name).is_absolute() or name.startswith(("/", "\\")):
            raise UnsafePath(f"file name {name!r} is absolute; names must be relative to the image folder")
        path = resolve_inside(root, rel)
    except UnsafePath as exc:
        q.report(Issue("path-outside-root", fname, str(exc), image=name))
        return None
    if not path.is_file():
        q.report(Issue("image-missing", fname, f"image file {path} does not exist", image=name))
        return None
    return SourceImage(image_id=image_id, name=Path(name).stem, path=path, rel_path=rel, width=w, height=h)


def _annotation(ann, images, cat_of, seen, fname, q: Quarantine, tol: float) -> SourceObject | None:
    if not isinstance(ann, dict) or not isinstance(ann.get("id"), int):
        q.report(Issue("annotation-invalid", fname, f"annotation without an integer id: {str(ann)[:120]}"))
        return None
    aid = ann["id"]
    img = images.get(ann.get("image_id"))
    image_label = img.name if img else str(ann.get("image_id"))
    if aid in seen:
        q.report(Issue("duplicate-annotation-id", fname, f"annotation id {aid} appears twice; the later one is skipped",
                       image=image_label, ann_id=aid))
        return None
    seen.add(aid)
    if img is None:
        q.report(Issue("annotation-image-unknown", fname, f"image_id {ann.get('image_id')!r} is not a (usable) image "
                       "of this file", image=image_label, ann_id=aid))
        return None
    cid = ann.get("category_id")
    if cid not in cat_of:
        q.report(Issue("category-unknown", fname, f"category_id {cid!r} is not in the category map", image=img.name, ann_id=aid))
        return None
    seg = ann.get("segmentation")
    if isinstance(seg, dict):  # RLE (generic COCO, iscrowd objects)
        size = seg.get("size")
        if size != [img.height, img.width]:
            q.report(Issue("rle-size-mismatch", fname, f"RLE size {size} differs from the image's "
                           f"[{img.height}, {img.width}]", image=img.name, ann_id=aid))
            return None
        return SourceObject(aid, cat_of[cid], rle=seg)
    try:
        polys = parse_coco_polygons(seg, img.width, img.height, tol)
    except GeometryError as exc:
        q.report(Issue(exc.kind, fname, str(exc), image=img.name, ann_id=aid))
        return None
    return SourceObject(aid, cat_of[cid], polygons=[np.ascontiguousarray(p) for p in polys])
