"""COCO-style JSON (iSAID's release, or any COCO aerial dataset) -> checked `SourceImage`s."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from pipeline.contracts.categories import Vocabulary
from pipeline.contracts.config import SourceConfig
from pipeline.contracts.geometry import GeometryError, parse_coco_polygons
from pipeline.contracts.fileio import UnsafePath, path_kind, resolve_inside
from pipeline.contracts.masks import rle_problem
from pipeline.contracts.quarantine import Issue, Quarantine, brief, printable
from pipeline.contracts.records import SourceImage, SourceObject
from pipeline.ingest.source import OversizedInt, SourceError, file_name_problem, id_problem, side_problem


def load_json(path: Path) -> dict:
    """Parse a COCO JSON; anything that leaves no record to read (not a regular file, unparsable, nested past
    the parser's limit, no `images` or `annotations` list) is a `SourceError` naming the file."""
    kind = path_kind(path)
    if kind == "missing":
        raise SourceError(f"{path}: annotation file not found")
    if kind != "regular":
        raise SourceError(f"{path}: the annotation file is {kind}, not a regular file; it is not opened")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SourceError(f"{path}: cannot read annotation JSON: {exc.strerror or exc}") from exc
    try:
        data = _parse(raw)
    except RecursionError as exc:
        raise SourceError(f"{path}: cannot read annotation JSON: nested deeper than the parser allows "
                          f"(~{sys.getrecursionlimit()} levels; COCO nests 5)") from exc
    except ValueError as exc:
        raise SourceError(f"{path}: cannot read annotation JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise SourceError(f"{path}: not a COCO annotation file (no `images` list)")
    if "annotations" not in data:
        raise SourceError(f"{path}: no `annotations` list (an image-info file has nothing to plan)")
    if not isinstance(data["annotations"], list) or not isinstance(data.get("categories", []), list):
        raise SourceError(f"{path}: `annotations` and `categories` must be lists")
    return data


def _parse(raw: bytes):
    """json.loads; an integer over Python's 4300-digit limit fails the fast parse, and the file is parsed again
    with such integers kept as `OversizedInt`, so only their records are quarantined."""
    try:
        return json.loads(raw)
    except ValueError as exc:
        if "integer string conversion" not in str(exc):
            raise
    return json.loads(raw, parse_int=lambda s: int(s) if len(s) < 4000 else OversizedInt(s))


def identity_categories(cats: dict[int, dict], vocab: Vocabulary, fname: str) -> dict[int, int]:
    """Without a `category_map` a file's category ids are the vocabulary's: only when its names agree. A file that
    lists no categories is taken at its ids (the iSAID mask-PNG layout has none); a file whose categories are
    another vocabulary's is refused, never mapped id for id onto the wrong classes."""
    if not cats:
        return {c.id: c.id for c in vocab.categories}
    hint = "give source.category_map (docs/config.md) to map its categories onto the vocabulary"
    for cid, c in sorted(cats.items()):
        name = c.get("name")
        ours = vocab.lookup(cid)
        named = vocab.lookup(name) if isinstance(name, str) else None
        if ours is not None and named is not None and named.id != cid:
            raise SourceError(f"{fname}: category id {cid} is {name!r} there but {ours.name!r} in the vocabulary; {hint}")
        if ours is not None and isinstance(name, str) and named is None:
            raise SourceError(f"{fname}: category id {cid} is {name!r}, not a category of the vocabulary "
                              f"(id {cid} is {ours.name!r} there); {hint}")
    out = {cid: cid for cid in cats if cid in vocab}
    if not out:
        raise SourceError(f"{fname}: none of its {len(cats)} category ids is one of the vocabulary's; {hint}")
    return out


def category_resolver(data: dict, vocab: Vocabulary, cfg: SourceConfig, fname: str = "",
                      q: Quarantine | None = None) -> dict[int, int]:
    """Source category id -> vocabulary id. Without a map, ids must match the vocabulary."""
    cats = {}
    for c in data.get("categories", []):
        problem = id_problem(c.get("id"), "category id") if isinstance(c, dict) else f"category entry {brief(c)} is not an object"
        if problem is not None:
            if q is not None:
                q.report(Issue("category-record-invalid", fname, problem))
            continue
        cats[c["id"]] = c
    if cfg.category_map is None:
        return identity_categories(cats, vocab, fname)
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
    cat_of = category_resolver(data, vocab, cfg, fname, q)
    images: dict[int, SourceImage] = {}
    for k, rec in enumerate(data["images"]):
        img = _image(rec, k, root, img_rel, fname, q)
        if img is None:
            continue
        if img.image_id in images:
            q.report(Issue("duplicate-image-id", fname, f"image id {img.image_id} appears twice; the second entry "
                           f"({img.rel_path}) is skipped", image=img.name))
            continue
        images[img.image_id] = img
    seen: set[int] = set()
    for k, ann in enumerate(data["annotations"]):
        obj = _annotation(ann, k, images, cat_of, seen, fname, q, tol)
        if obj is not None:
            images[ann["image_id"]].objects.append(obj)
    return list(images.values())


def _image(rec, k: int, root: Path, img_rel: str, fname: str, q: Quarantine) -> SourceImage | None:
    """One `images` entry checked field by field before any is used; None (and an issue) when it is unusable."""
    if not isinstance(rec, dict):
        q.report(Issue("image-record-invalid", fname, f"images[{k}] {brief(rec)} is not an object"))
        return None
    name = rec.get("file_name")
    problem = file_name_problem(name)
    if problem is not None:
        label = printable(name) if isinstance(name, str) and name else f"id {brief(rec.get('id'))}"
        q.report(Issue("image-record-invalid", fname, f"images[{k}]: {problem}", image=label))
        return None
    image_id = rec.get("id")
    problem = id_problem(image_id, "image id")
    if problem is not None:
        q.report(Issue("image-record-invalid", fname, f"images[{k}]: {problem}", image=name))
        return None
    w, h = rec.get("width"), rec.get("height")
    problem = side_problem(w, h)
    if problem is not None:
        q.report(Issue("image-size-invalid", fname, problem, image=name))
        return None
    rel = f"{img_rel}/{name}" if img_rel not in ("", ".") else name
    try:
        if Path(name).is_absolute() or name.startswith(("/", "\\")):
            raise UnsafePath(f"file name {name!r} is absolute; names must be relative to the image folder")
        path = resolve_inside(root, rel)
    except UnsafePath as exc:
        q.report(Issue("path-outside-root", fname, str(exc), image=name))
        return None
    kind = path_kind(path)
    if kind == "missing":
        q.report(Issue("image-missing", fname, f"image file {path} does not exist", image=name))
        return None
    if kind != "regular":
        q.report(Issue("image-not-regular-file", fname, f"image file {path} is {kind}, not a regular file; it is "
                       "not opened", image=name))
        return None
    return SourceImage(image_id=image_id, name=Path(name).stem, path=path, rel_path=rel, width=w, height=h,
                       annotations=fname)


def _annotation(ann, k: int, images, cat_of, seen, fname, q: Quarantine, tol: float) -> SourceObject | None:
    """One `annotations` entry: ids, image, category and segmentation checked before any is used."""
    if not isinstance(ann, dict):
        q.report(Issue("annotation-invalid", fname, f"annotations[{k}] {brief(ann)} is not an object"))
        return None
    aid, image_id = ann.get("id"), ann.get("image_id")
    problem = id_problem(image_id, "image_id")
    img = images.get(image_id) if problem is None else None
    image_label = img.name if img else brief(image_id)
    id_bad = id_problem(aid, "annotation id")
    if id_bad is not None:
        q.report(Issue("annotation-invalid", fname, f"annotations[{k}]: {id_bad}", image=image_label))
        return None
    if aid in seen:
        q.report(Issue("duplicate-annotation-id", fname, f"annotation id {aid} appears twice; the later one is skipped",
                       image=image_label, ann_id=aid))
        return None
    seen.add(aid)
    if problem is not None:
        q.report(Issue("annotation-invalid", fname, problem, image=image_label, ann_id=aid))
        return None
    if img is None:
        q.report(Issue("annotation-image-unknown", fname, f"image_id {image_id!r} is not a (usable) image "
                       "of this file", image=image_label, ann_id=aid))
        return None
    cid = ann.get("category_id")
    problem = id_problem(cid, "category_id")
    if problem is not None or cid not in cat_of:
        q.report(Issue("category-unknown", fname, problem or f"category_id {cid!r} is not in the category map",
                       image=img.name, ann_id=aid))
        return None
    seg = ann.get("segmentation")
    if isinstance(seg, dict):  # RLE (generic COCO, iscrowd objects)
        problem = rle_problem(seg, img.height, img.width)
        if problem is not None:
            kind = "rle-size-mismatch" if "differs from the image" in problem else "rle-invalid"
            q.report(Issue(kind, fname, problem, image=img.name, ann_id=aid))
            return None
        return SourceObject(aid, cat_of[cid], rle={"size": list(seg["size"]), "counts": seg["counts"]})
    try:
        polys = parse_coco_polygons(seg, img.width, img.height, tol)
    except GeometryError as exc:
        q.report(Issue(exc.kind, fname, str(exc), image=img.name, ann_id=aid))
        return None
    return SourceObject(aid, cat_of[cid], polygons=[np.ascontiguousarray(p) for p in polys])
