"""Plan one source image: decode it once, tile it, clip its objects to each window and plan each patch.

This is the work a planning run maps over images; it returns plans, issues and the size and sha256 of every
file it wrote, and writes only the patch and set-of-marks PNGs (atomically). Whole-image masks are never
rasterised per object: polygons are filled into bounding-box crops per patch, and mask-PNG ids are cut from the
patch's crop of the id image.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely
from shapely.strtree import STRtree

from annotations.marks import render_som
from annotations.plan import Clipped, filter_reason, plan_objects
from annotations.priors import describe

from pipeline.contracts import masks
from pipeline.contracts.categories import Vocabulary
from pipeline.contracts.config import PlanConfig
from pipeline.contracts.fileio import path_kind
from pipeline.contracts.layout import marks_image, patch_image
from pipeline.contracts.geometry import GeometryError, clip_to_window, polygons_to_shape, rasterize, window_box
from pipeline.contracts.imageio import read_color_mask, read_id_mask, read_image, write_png
from pipeline.contracts.quarantine import Issue, Quarantine
from pipeline.contracts.records import Georef, PatchPlan, PlannedObject, SourceImage, Window
from pipeline.contracts.tiling import patch_name, tile_windows
from pipeline.ingest.source import SourceError


@dataclass
class ImageResult:
    plans: list[PatchPlan] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    stats: Counter = field(default_factory=Counter)
    files: dict[str, dict] = field(default_factory=dict)  # PNG path (relative to the split) -> {"size", "sha256"}


@dataclass
class _Source:
    """An object ready to clip: a shape (polygon sources) or a crop of the whole image (mask sources)."""

    object_id: int
    category_id: int
    geom: object | None = None
    crop: np.ndarray | None = None  # bool crop in image coordinates (RLE sources)
    x0: int = 0  # bounding box in image pixels, end exclusive (x1, y1 set for mask sources)
    y0: int = 0
    x1: int = 0
    y1: int = 0


def patch_id(img: SourceImage, win: Window, whole: bool) -> str:
    """A patch's id, which names its PNGs: a devkit patch keeps its own name, a tile adds its window."""
    return img.name if img.untiled else patch_name(img.name, win, whole)


def patch_ids(img: SourceImage, cfg: PlanConfig) -> set[str]:
    """Every id an image's patches may take, known before it is decoded (pure): its name, and its tiles' ids
    when the annotation file gives its size. Two images sharing one of these would write the same PNG."""
    ids = {img.name}
    if not img.untiled and img.width is not None and img.height is not None:
        windows = tile_windows(img.width, img.height, cfg.tiling.patch_size, cfg.tiling.overlap)
        whole = len(windows) == 1 and (windows[0].width, windows[0].height) == (img.width, img.height)
        ids.update(patch_id(img, win, whole) for win in windows)
    return ids


def plan_image(img: SourceImage, cfg: PlanConfig, vocab: Vocabulary, out_dir: Path) -> ImageResult:
    """All kept patches of one image. Bad records go to the result's issues (strict mode raises)."""
    res = ImageResult()
    q = Quarantine(cfg.strict)
    kind = path_kind(img.path)  # never open a FIFO or device: it would block the worker for ever
    if kind != "regular":
        q.report(Issue("image-not-regular-file", str(img.path), f"image file is {kind}, not a regular file; it is not "
                       "opened", image=img.name))
        res.issues = q.issues
        return res
    try:
        rgb, georef = read_image(img.path)
    except OSError as exc:
        q.report(Issue("image-unreadable", str(img.path), str(exc), image=img.name))
        res.issues = q.issues
        return res
    h, w = rgb.shape[:2]
    if img.width is not None and (img.width, img.height) != (w, h):
        q.report(Issue("image-size-mismatch", str(img.path), f"the annotation file says {img.width}x{img.height} "
                       f"but the image is {w}x{h}", image=img.name))
        res.issues = q.issues
        return res
    if img.id_mask_path is not None:
        sources, id_map = _mask_sources(img, w, h, vocab, q)
    else:
        sources, id_map = _shape_sources(img, w, h, q), None
    if sources is None:
        res.issues = q.issues
        return res

    if img.untiled:
        windows, whole = [Window(0, 0, w, h)], True
    else:
        windows = tile_windows(w, h, cfg.tiling.patch_size, cfg.tiling.overlap)
        whole = len(windows) == 1 and (windows[0].width, windows[0].height) == (w, h)
    config_hash = cfg.fingerprint()  # hashes the whole config: once per image, not per patch
    tree = STRtree([s.geom for s in sources]) if id_map is None and sources else None
    for win in windows:
        res.stats["patches"] += 1
        if id_map is not None:
            clipped = _clip_masks(sources, id_map, win, cfg)
        else:
            idx = tree.query(window_box(win)) if tree is not None else []
            clipped = _clip_shapes([sources[i] for i in sorted(idx)], win, cfg)
        plan = _plan_window(img, rgb, georef, win, whole, clipped, cfg, config_hash, vocab, out_dir, res)
        if plan is not None:
            res.plans.append(plan)
    res.issues = q.issues
    return res


def _shape_sources(img: SourceImage, w: int, h: int, q: Quarantine) -> list[_Source]:
    out = []
    for obj in img.objects:
        if obj.rle is not None:
            got = _decode_rle(img, obj, h, w, q)
            if got is None:
                continue
            crop, x0, y0 = got
            geom = shapely.box(x0, y0, x0 + crop.shape[1] - 1, y0 + crop.shape[0] - 1)
            out.append(_Source(obj.ann_id, obj.category_id, geom=geom, crop=crop, x0=x0, y0=y0))
            continue
        try:
            shape = polygons_to_shape(obj.polygons)
        except GeometryError as exc:
            q.report(Issue(exc.kind, str(img.path), str(exc), image=img.name, ann_id=obj.ann_id))
            continue
        if shape.repaired:
            q.report(Issue("polygon-repaired", str(img.path), f"invalid polygon repaired ({shape.repaired})",
                           image=img.name, ann_id=obj.ann_id, severity="warning"))
        out.append(_Source(obj.ann_id, obj.category_id, geom=shape.geom))
    return out


def _decode_rle(img: SourceImage, obj, h: int, w: int, q: Quarantine):
    """A source RLE's crop, or None: a malformed one (pycocotools decodes those unchecked) is quarantined."""
    problem = masks.rle_problem(obj.rle, h, w)
    if problem is None:
        try:
            return masks.full_image_rle_to_crop(obj.rle, h, w)
        except (ValueError, TypeError, OverflowError) as exc:
            problem = f"RLE cannot be decoded: {exc}"
    q.report(Issue("rle-invalid", img.annotations or str(img.path), problem, image=img.name, ann_id=obj.ann_id))
    return None


def _mask_sources(img: SourceImage, w: int, h: int, vocab: Vocabulary, q: Quarantine):
    """Objects of an instance-id PNG: one per id, category from the class-colour PNG."""
    for p in (img.id_mask_path, img.color_mask_path):
        kind = path_kind(p)
        if kind != "regular":
            q.report(Issue("mask-not-regular-file", str(p), f"mask PNG is {kind}, not a regular file; it is not opened",
                           image=img.name))
            return None, None
    try:
        ids = read_id_mask(img.id_mask_path)
        colors = read_color_mask(img.color_mask_path)
    except OSError as exc:
        q.report(Issue("mask-unreadable", str(img.id_mask_path), str(exc), image=img.name))
        return None, None
    for p, arr in ((img.id_mask_path, ids), (img.color_mask_path, colors)):
        if arr.shape[:2] != (h, w):
            q.report(Issue("mask-size-mismatch", str(p), f"mask is {arr.shape[1]}x{arr.shape[0]} but the image is "
                           f"{w}x{h}", image=img.name))
            return None, None
    flat = ids.ravel()
    nz = np.flatnonzero(flat)
    order = np.argsort(flat[nz], kind="stable")
    pix = nz[order]
    vals, starts = np.unique(flat[pix], return_index=True)
    sources = []
    for k, val in enumerate(vals.tolist()):
        p = pix[starts[k] : starts[k + 1] if k + 1 < len(starts) else None]
        ys, xs = np.divmod(p, w)
        r, g, b = colors[ys[0], xs[0]]
        cat = vocab.by_color.get((int(r), int(g), int(b)))
        if cat is None:
            q.report(Issue("category-unknown", str(img.color_mask_path), f"class colour ({r}, {g}, {b}) of instance "
                           f"{val} is not a category colour", image=img.name, ann_id=val))
            continue
        sources.append(_Source(val, cat.id, x0=int(xs.min()), y0=int(ys.min()), x1=int(xs.max()) + 1, y1=int(ys.max()) + 1))
    return sources, ids


def _clip_masks(sources: list[_Source], id_map: np.ndarray, win: Window, cfg: PlanConfig) -> list[tuple]:
    patch = id_map[win.y0 : win.y1, win.x0 : win.x1]
    out = []
    for s in sources:
        x1, y1 = s.x1, s.y1
        if x1 <= win.x0 or y1 <= win.y0 or s.x0 >= win.x1 or s.y0 >= win.y1:
            continue
        cx0, cy0 = max(s.x0 - win.x0, 0), max(s.y0 - win.y0, 0)
        cx1, cy1 = min(x1 - win.x0, win.width), min(y1 - win.y0, win.height)
        crop = patch[cy0:cy1, cx0:cx1] == s.object_id
        if crop.sum() < max(cfg.clip.min_object_area, 1):
            continue
        truncated = s.x0 < win.x0 or s.y0 < win.y0 or x1 > win.x1 or y1 > win.y1
        out.append((s, crop, cx0, cy0, truncated))
    return out


def _clip_shapes(sources: list[_Source], win: Window, cfg: PlanConfig) -> list[tuple]:
    out = []
    for s in sources:
        got = clip_to_window(s.geom, win, cfg.clip.min_fragment_area)
        if got is None:
            continue
        geom, truncated = got
        if s.crop is not None:  # RLE source: cut its crop to the window
            r = _cut_crop(s, win)
        else:
            r = rasterize(geom, win.height, win.width)
        if r is None:
            continue
        crop, x0, y0 = r
        if crop.sum() < max(cfg.clip.min_object_area, 1):
            continue
        out.append((s, crop, x0, y0, truncated))
    return out


def _cut_crop(s: _Source, win: Window):
    ch, cw = s.crop.shape
    gx0, gy0 = max(s.x0, win.x0), max(s.y0, win.y0)
    gx1, gy1 = min(s.x0 + cw, win.x1), min(s.y0 + ch, win.y1)
    if gx1 <= gx0 or gy1 <= gy0:
        return None
    crop = s.crop[gy0 - s.y0 : gy1 - s.y0, gx0 - s.x0 : gx1 - s.x0]
    return (crop, gx0 - win.x0, gy0 - win.y0) if crop.any() else None


def _plan_window(img, rgb, georef, win, whole, clipped, cfg: PlanConfig, config_hash: str, vocab: Vocabulary,
                 out_dir: Path, res: ImageResult) -> PatchPlan | None:
    ph, pw = win.height, win.width
    stats = res.stats
    items = []
    for s, crop, x0, y0, truncated in clipped:
        pri = describe(crop, x0, y0, pw, ph, cfg.priors.size_words, cfg.priors.elongation)
        obj = PlannedObject(
            object_id=s.object_id, category_id=s.category_id, category=vocab[s.category_id].display,
            rle=masks.crop_to_rle(crop, x0, y0, ph, pw), bbox=(float(x0), float(y0), float(crop.shape[1]), float(crop.shape[0])),
            truncated=truncated, **pri,
        )
        items.append(Clipped(obj, crop, x0, y0))
    objects = [c.obj for c in items]
    pre = filter_reason(objects, 1, cfg.filters, pw, ph)
    if pre is not None:
        stats[f"dropped: {pre}"] += 1
        return None
    objects, groups, marks = plan_objects(items, vocab, cfg, pw, ph)
    post = filter_reason(objects, len(marks), cfg.filters, pw, ph)
    if post is not None:
        stats[f"dropped: {post}"] += 1
        return None
    name = patch_id(img, win, whole)
    patch_rgb = rgb[win.y0 : win.y1, win.x0 : win.x1]
    image_path = som_path = None
    if cfg.output.write_patches:
        image_path = patch_image(name)
        res.files[image_path] = write_png(out_dir / image_path, patch_rgb, cfg.output.png_compression)
    if cfg.output.write_som and marks:
        som_path = marks_image(name)
        res.files[som_path] = write_png(out_dir / som_path, render_som(patch_rgb, marks, cfg.marks),
                                        cfg.output.png_compression)
    stats["kept"] += 1
    stats["objects"] += len(objects)
    stats["instances"] += len(marks)
    stats["groups"] += len(groups)
    stats["group_objects"] += sum(g.count for g in groups)
    _count_unphrased(stats, objects, len(marks) + len(groups))
    window = img.pretiled or win
    return PatchPlan(
        patch_id=name, split="", source_image=img.parent or img.name, source_image_id=img.image_id,
        source_path=img.rel_path, window=window, width=pw, height=ph, image_path=image_path, som_path=som_path,
        georef=_patch_georef(georef, win), objects=objects, groups=groups, marks=marks, config_hash=config_hash,
    )


def _count_unphrased(stats: Counter, objects: list[PlannedObject], phrases: int) -> None:
    """What the tier rule left undescribed: objects it dropped (too few to group, too small to mark) and kept
    patches left with no grounded phrase, so a rule's per-patch ratios are read beside what it cost."""
    dropped = sum(o.tier == "dropped" for o in objects)
    if dropped:
        stats["dropped_objects"] += dropped
    if not phrases:
        stats["kept without a phrase"] += 1


def _patch_georef(georef: Georef | None, win: Window) -> Georef | None:
    """The patch's affine transform: the image's, moved to the window's top-left pixel."""
    if georef is None or georef.transform is None:
        return georef
    a, b, c, d, e, f = georef.transform
    return Georef(georef.crs, (a, b, a * win.x0 + b * win.y0 + c, d, e, d * win.x0 + e * win.y0 + f))


class NothingPlanned(SourceError):
    """A split that kept no patch (every image quarantined, or filters that drop every patch): an empty split
    would pass into drafting and the release unnoticed, so the run stops; `summary` has its counts."""

    def __init__(self, message: str, summary=None):
        super().__init__(message)
        self.summary = summary


def nothing_planned(split: str, stats: Counter, issues: list[Issue], report: Path) -> str | None:
    """Why a finished split has nothing to draft (one line, pure), or None when it kept a patch."""
    if stats.get("kept", 0) > 0:
        return None
    dropped = ", ".join(f"{k.removeprefix('dropped: ')} {n}" for k, n in sorted(stats.items()) if k.startswith("dropped: "))
    errors = Counter(i.kind for i in issues if i.severity == "error")
    bad = ", ".join(f"{k} {n}" for k, n in errors.most_common(3))
    return (f"{split}: nothing planned: {stats.get('images', 0)} image(s), {stats.get('patches', 0)} patch(es) tiled, "
            f"0 kept" + (f" (dropped: {dropped})" if dropped else "")
            + f"; {sum(errors.values())} record(s) quarantined" + (f" ({bad})" if bad else "")
            + f", listed in {report}; the plans are left incomplete so no later stage reads an empty split")
