"""Readers of ground truth and predictions: our Parquet, the released GeoPixelD JSON layout, GLaMM's JSONs.

Our layouts are read by the shared readers of `model.sources` (the ones the trainer and predict use) into
`model.records.GroundedPatch`es and turned into `EvalImage`s here; GLaMM's prediction JSONs are read here only,
its COCO ground-truth pair by `model.eval.glamm_gt`. Every image is keyed by patch name (`patch_id`; in the
GeoPixelD layout the stem of the image file; GLaMM's prediction files by their name, as its evaluator opens
`<image id>.json`). Problems are collected per record and raised together as one `EvalInputError` that names
the file and the image, so a broken file is never scored in part.

Ground truth from drafting records keeps what the release keeps (`status` ok, not rejected by a curator);
predictions keep every row: a failed or empty prediction is an empty prediction, scored, never dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from model.eval import glamm_gt
from model.eval.types import (EvalImage, EvalInputError, EvalPhrase, caption_text, image_key, phrase_text,
                              phrases_of)
from model.records import DataError, GroundedPatch, normalise_rle, phrase_rle
from model.sources import GeoPixelDFiles, NotFound, json_kind, locate, parquet_source, read_json

GT = "ground truth"
UNMATCHED_OPTION = "--unmatched-masks"


@dataclass
class Loaded:
    images: dict[str, EvalImage]
    format: str  # parquet-records | parquet-dataset | geopixeld-json | glamm-json | glamm-coco
    sources: list[str]
    notes: list[str] = field(default_factory=list)  # what the report must say: records left out, counts changed


def load(paths: list[Path], role: str, split: str | None = None,
         sizes: dict[str, tuple[int, int]] | None = None, unmatched_masks: bool = False) -> Loaded:
    """Read one or more files or folders (`role`: "ground truth" or "predictions") into images by patch name.

    `sizes` ({image: (height, width)}) sizes masks drawn from polygons when no image file says how big it is;
    `unmatched_masks` accepts GLaMM predictions whose phrases and masks differ in number (`_glamm_texts`).
    """
    problems: list[str] = []
    images: dict[str, EvalImage] = {}
    formats, sources, notes = [], [], []
    pairs: set[glamm_gt.GlammPair] = set()
    for path in paths:
        pair = glamm_gt.pair_at(Path(path), split)
        if pair is not None:
            if role != GT:
                raise EvalInputError([f"{path}: GLaMM's ground-truth files ({glamm_gt.MASK}, {glamm_gt.CAPTION}) "
                                      f"cannot be the {role}"])
            if pair in pairs:  # both files of one pair given
                continue
            pairs.add(pair)
            kind, files = glamm_gt.FORMAT, [pair.mask, pair.caption]
            found = glamm_gt.read_pair(pair, problems)
        else:
            kind, files, reader = resolve_inputs(Path(path), split, role)
            if role == GT and kind == "parquet-records" and files and files[0].parent.name == "records":
                notes.append(f"{path}: the ground truth is the drafted records of {files[0].parent}, not curated "
                             "ones (a split that needs curation is held back from the release until every patch "
                             "is decided)")
            if kind == "glamm-json":
                found, note = _read_glamm(files, problems, unmatched_masks)
            else:
                found, note = _read_patches(reader, role, problems, sizes or {})
            if note:
                notes.append(f"{path}: {note}")
        formats.append(kind)
        sources += [str(f) for f in files]
        for img in found:
            if img.image_id in images:
                problems.append(f"{img.source}: image {img.image_id} appears more than once in the {role} "
                                f"(also in {images[img.image_id].source})")
                continue
            images[img.image_id] = img
    if problems:
        raise EvalInputError(problems)
    return Loaded(images, "+".join(sorted(set(formats))), sources, notes)


# ---------------------------------------------------------------- what a path holds


def resolve_inputs(path: Path, split: str | None, role: str) -> tuple[str, list[Path], object]:
    """(format, files, reader) of a file or folder, found by `model.sources.locate` (a build root with --split
    reads its curated records once curation finished, else the drafted ones, as the release and the trainer
    do); a file or folder of GLaMM prediction JSONs is eval's own (reader None)."""
    try:
        loc = locate(path, split)
        if loc.format == "parquet":
            reader = parquet_source(loc.files, loc.root)
            return ("parquet-dataset" if reader.kind == "dataset" else "parquet-records"), loc.files, reader
        kinds = {_json_kind(f) for f in loc.files}
        if len(kinds) > 1:
            raise EvalInputError([f"{path}: mixes GeoPixelD per-patch JSONs and GLaMM prediction JSONs"])
        if kinds == {"glamm-json"}:
            return "glamm-json", loc.files, None
        return "geopixeld-json", loc.files, GeoPixelDFiles(loc.files)
    except NotFound as exc:
        if not Path(path).exists():
            raise EvalInputError([f"{path}: no such file or folder ({role})"]) from exc
        hint = "; for a build root pass --split" if "--split" in str(exc) else ""
        raise EvalInputError([f"{path}: no Parquet shards, GeoPixelD JSON or GLaMM JSON found ({role}){hint}"]) \
            from exc
    except DataError as exc:
        raise EvalInputError([f"{exc} ({role})"]) from exc


def _json_kind(path: Path) -> str:
    try:
        data = read_json(path)
    except DataError as exc:
        raise EvalInputError([str(exc)]) from exc
    if json_kind(data) is not None:
        return "geopixeld-json"
    if isinstance(data, dict) and _glamm_body(data) is not None:
        return "glamm-json"
    coco = isinstance(data, dict) and {"images", "annotations"} <= data.keys()
    raise EvalInputError([f"{path}: neither a GeoPixelD index or per-patch JSON nor a GLaMM prediction JSON "
                          f"(expected keys conversations, gcg_description, or caption/phrases/pred_masks)"
                          + (f"; a COCO JSON is read as GLaMM's ground truth when named <split>{glamm_gt.MASK} "
                             f"beside <split>{glamm_gt.CAPTION}" if coco else "")])


# ---------------------------------------------------------------- shared checks


def _normalise_rle(rle, where: str, problems: list[str]) -> dict | None:
    try:
        return normalise_rle(rle)
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
        return None


def _assemble(image_id: str, height: int | None, width: int | None, caption: str, texts: list[str], n_seg: int,
              masks: list[tuple[object, int | None]], source: str, problems: list[str]) -> EvalImage | None:
    """An EvalImage when the phrases, [SEG] tokens and masks agree and every mask has the image's size."""
    where = f"{source}: image {image_id}"
    before = len(problems)
    if n_seg != len(masks):
        problems.append(f"{where}: {n_seg} [SEG] in the description but {len(masks)} masks")
    if len(texts) != n_seg:
        problems.append(f"{where}: {n_seg} [SEG] but {len(texts)} `<p> phrase </p> [SEG]` phrases "
                        f"(a [SEG] without its phrase, or markup that does not parse)")
    phrases = []
    for i, (rle, objects) in enumerate(masks):
        if rle is None:
            problems.append(f"{where}: mask {i} is missing")
            continue
        norm = _normalise_rle(rle, f"{where}: mask {i}", problems)
        if norm is None:
            continue
        if height is None or width is None:
            height, width = norm["size"]
        if norm["size"] != [height, width]:
            problems.append(f"{where}: mask {i} is {norm['size'][0]}x{norm['size'][1]} (h x w) but the image "
                            f"is {height}x{width}")
            continue
        if i < len(texts):
            phrases.append(EvalPhrase(texts[i], norm, objects))
    if len(problems) > before:
        return None
    return EvalImage(image_id, int(height or 0), int(width or 0), caption, phrases, source)


# ---------------------------------------------------------------- our layouts (model.sources readers)


def _read_patches(reader, role: str, problems: list[str], sizes) -> tuple[list[EvalImage], str]:
    """Every record of a reader as EvalImages; problems are collected per file and per record."""
    out: list[EvalImage] = []
    failed = rejected = bare = 0
    for patch in _patches(reader, problems):
        if role == GT and patch.status != "ok":
            failed += 1
            continue
        if role == GT and patch.curation_status == "rejected":
            rejected += 1
            continue
        img = _from_patch(patch, problems, sizes, bare_ok=role != GT)
        if img is not None:
            out.append(img)
            bare += sum(not ph.text for ph in img.phrases)
    if role != GT:
        return out, (f"{bare} predicted [SEG] without a <p> phrase </p> scored as empty phrases" if bare else "")
    skipped = ", ".join(s for s in (f"{failed} failed records" if failed else "",
                                    f"{rejected} rejected by curation" if rejected else "") if s)
    return out, (f"left out of the ground truth as in the release: {skipped}" if skipped else "")


def _patches(reader, problems: list[str]):
    """Parquet: shard by shard; GeoPixelD: entry by entry (a per-patch file may be missing)."""
    if isinstance(reader, GeoPixelDFiles):
        for k in range(len(reader)):
            try:
                yield reader.patch(0, k)
            except DataError as exc:
                problems.append(str(exc))
        return
    for si in range(reader.shard_count()):
        try:
            yield from reader.patches(si)
        except DataError as exc:
            problems.append(str(exc))


def _from_patch(patch: GroundedPatch, problems: list[str], sizes, bare_ok: bool = False) -> EvalImage | None:
    """`bare_ok` (predictions): a generated [SEG] with no `<p> phrase </p>` before it, whose mask the record does
    carry (`geopixeld predict` writes it with an empty tag), is scored as an empty phrase, as GLaMM's pipeline keeps
    every [SEG] mask: it counts for AP50 and mIoU and can never be recalled."""
    pid, source = patch.patch_id, patch.source
    if not pid:
        problems.append(f"{source}: a row without patch_id")
        return None
    where = f"{source}: image {pid}"
    texts, n_seg = phrases_of(patch.description)
    polygons = any(p.polygons is not None for p in patch.phrases)
    h, w = patch.height, patch.width
    if polygons and (h is None or w is None):
        if pid not in sizes:
            problems.append(f"{where}: cannot tell the image size (no {pid}.png beside the JSON)")
            return None
        h, w = sizes[pid]
    if bare_ok and len(texts) < n_seg == len(patch.phrases) and not polygons:
        texts = [phrase_text(p.tag) if p.tag else "" for p in patch.phrases]
    masks = []
    for k, ph in enumerate(patch.phrases):
        if ph.polygons is None:
            masks.append((ph.rle, ph.objects))
            continue
        try:
            masks.append((phrase_rle(ph, h, w), ph.objects))
        except ValueError as exc:
            problems.append(f"{where}: mask {k}: {exc}")
            return None
    return _assemble(pid, h, w, caption_text(patch.description), texts, n_seg, masks, source, problems)


# ---------------------------------------------------------------- GLaMM's per-image prediction JSONs


def _glamm_body(data: dict) -> dict | None:
    """GLaMM writes {image_id, caption, phrases, pred_masks}; its evaluator also accepts it wrapped in one key."""
    if {"caption", "pred_masks"} <= data.keys():
        return data
    if len(data) == 1:
        inner = next(iter(data.values()))
        if isinstance(inner, dict) and {"caption", "pred_masks"} <= inner.keys():
            return inner
    return None


def _read_glamm(files: list[Path], problems: list[str], unmatched_masks: bool = False) -> tuple[list[EvalImage], str]:
    """GLaMM's per-image prediction JSONs, each keyed by its file name: GLaMM's evaluator opens `<image id>.json`
    and never reads the `image_id` inside, so one that names another image is refused rather than trusted."""
    out = []
    unmatched = unnamed = dropped = 0
    for f in files:
        body = _glamm_body(json.loads(f.read_text()))
        if body is None:
            problems.append(f"{f}: not a GLaMM prediction JSON (caption, phrases, pred_masks)")
            continue
        image_id = image_key(f.stem)
        inner = body.get("image_id")
        if inner not in (None, "") and image_key(str(inner)) != image_id:
            problems.append(f"{f}: image {image_id}: its image_id is {inner}, but GLaMM's evaluator keys a "
                            f"prediction by its file name (<image id>.json)")
            continue
        phrases = [phrase_text(str(p)) for p in body.get("phrases") or []]
        masks = body.get("pred_masks") or []
        caption = caption_text(body.get("caption") or "")
        if len(phrases) != len(masks):
            if not unmatched_masks:
                problems.append(f"{f}: image {image_id}: {len(phrases)} phrases but {len(masks)} masks (pass "
                                f"{UNMATCHED_OPTION} to score them as GLaMM's evaluator does: docs/eval.md)")
                continue
            unmatched += 1
            unnamed += max(len(masks) - len(phrases), 0)
            dropped += max(len(phrases) - len(masks), 0)
        img = _assemble(image_id, None, None, caption, _glamm_texts(phrases, len(masks)), len(masks),
                        [(m, None) for m in masks], str(f), problems)
        if img is not None:
            out.append(img)
    note = (f"{unmatched} GLaMM predictions had phrases and pred_masks of different lengths ({UNMATCHED_OPTION}): "
            f"{unnamed} masks without a phrase scored as empty phrases (AP50 and mIoU count them, Recall never "
            f"does), {dropped} phrases without a mask left out (nothing grounds them; the caption keeps their text)") \
        if unmatched else ""
    return out, note


def _glamm_texts(phrases: list[str], n_masks: int) -> list[str]:
    """The phrase of each mask as GLaMM's evaluator pairs them, by position: phrase i names mask i. Masks past
    the last phrase name nothing (an empty phrase, like a bare [SEG] in our Parquet); phrases past the last mask
    have no mask, and GLaMM's IoU matrix, which has a column per mask, never reaches them."""
    return phrases[:n_masks] + [""] * (n_masks - len(phrases))
