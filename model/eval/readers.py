"""Readers of ground truth and predictions: our Parquet, the released GeoPixelD JSON layout, GLaMM's JSONs.

Every reader returns `EvalImage`s keyed by patch name (`patch_id`; in the JSON layouts the stem of the image
or prediction file, as GLaMM keys its per-image files). Problems are collected per record and raised together
as one `EvalInputError` that names the file and the image, so a broken file is never scored in part.

Ground truth from drafting records keeps what the release keeps (`status` ok, not rejected by a curator);
predictions keep every row: a failed or empty prediction is an empty prediction, scored, never dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from pycocotools import mask as mask_utils

from pipeline.contracts import masks as rle_ops
from pipeline.contracts.geopixeld_format import polygons_to_mask
from pipeline.contracts.imageio import UnsafePath, image_size, resolve_inside
from pipeline.contracts.shards import MANIFEST, read_manifest

from model.eval.types import EvalImage, EvalInputError, EvalPhrase, caption_text, phrase_text, phrases_of

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


@dataclass
class Loaded:
    images: dict[str, EvalImage]
    format: str  # parquet-records | parquet-dataset | geopixeld-json | glamm-json
    sources: list[str]
    notes: list[str] = field(default_factory=list)  # records left out of the ground truth, and why


def load(paths: list[Path], role: str, split: str | None = None,
         sizes: dict[str, tuple[int, int]] | None = None) -> Loaded:
    """Read one or more files or folders (`role`: "ground truth" or "predictions") into images by patch name.

    `sizes` ({image: (height, width)}) sizes masks drawn from polygons when no image file says how big it is.
    """
    problems: list[str] = []
    images: dict[str, EvalImage] = {}
    formats, sources, notes = [], [], []
    for path in paths:
        kind, files = resolve_inputs(Path(path), split, role)
        formats.append(kind)
        sources += [str(f) for f in files]
        if kind.startswith("parquet"):
            found, skipped = _read_parquet(files, role, problems)
            if skipped:
                notes.append(f"{path}: {skipped}")
        elif kind == "geopixeld-json":
            found = _read_geopixeld(files, problems, sizes or {})
        else:
            found = _read_glamm(files, problems)
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


def resolve_inputs(path: Path, split: str | None, role: str) -> tuple[str, list[Path]]:
    """(format, files) of a file or folder; folders: a build root with --split, a release dataset folder, a
    folder of Parquet shards, a GeoPixelD layout (index or per-patch JSONs) or a folder of GLaMM JSONs."""
    if not path.exists():
        raise EvalInputError([f"{path}: no such file or folder ({role})"])
    if path.is_file():
        if path.suffix == ".parquet":
            return _parquet_kind([path]), [path]
        if path.suffix == ".json":
            return _json_kind(path), [path]
        raise EvalInputError([f"{path}: not a .parquet or .json file ({role})"])
    for sub in (["curated", "records"] + ([f"{split}/curated", f"{split}/records"] if split else [])):
        folder = path / sub  # curated records when curation finished, else the drafted ones (as the release)
        if folder.is_dir() and (sub.endswith("records") or (read_manifest(folder) or {}).get("complete")):
            return resolve_inputs(folder, split, role)
    if (path / "data").is_dir() and not list(path.glob("*.parquet")):  # a release dataset folder
        splits = sorted(p.name for p in (path / "data").iterdir() if p.is_dir())
        chosen = split if split else (splits[0] if len(splits) == 1 else None)
        if chosen is None or chosen not in splits:
            raise EvalInputError([f"{path}: a dataset with splits {', '.join(splits) or '(none)'}; "
                                  f"choose one with --split" + (f" (no split {split!r})" if split else "")])
        return resolve_inputs(path / "data" / chosen, split, role)
    parquet = sorted(path.glob("*.parquet"))
    if parquet:
        m = read_manifest(path)
        if m is not None and "complete" in m and not m["complete"]:
            raise EvalInputError([f"{path / MANIFEST}: the shards are unfinished (the run that writes them did "
                                  f"not complete); finish it before evaluating"])
        return _parquet_kind(parquet), parquet
    indexes = sorted(path.glob("GeoPixelD*.json"))
    if split and (path / f"GeoPixelD_{split}.json").exists():
        indexes = [path / f"GeoPixelD_{split}.json"]
    if len(indexes) == 1:
        return "geopixeld-json", indexes
    if len(indexes) > 1:
        raise EvalInputError([f"{path}: several GeoPixelD indexes ({', '.join(i.name for i in indexes)}); "
                              f"choose one with --split or name the file"])
    files = sorted(p for p in path.glob("*.json") if not p.name.startswith("_"))
    if files:
        kinds = {_json_kind(f) for f in files}
        if len(kinds) > 1:
            raise EvalInputError([f"{path}: mixes GeoPixelD per-patch JSONs and GLaMM prediction JSONs"])
        return kinds.pop(), files
    if split and (path / split).is_dir():
        return resolve_inputs(path / split, None, role)
    hint = "; for a build root pass --split" if any((path / s / "records").is_dir() for s in ("train", "val", "test")) else ""
    raise EvalInputError([f"{path}: no Parquet shards, GeoPixelD JSON or GLaMM JSON found ({role}){hint}"])


def _parquet_kind(files: list[Path]) -> str:
    names = pq.ParquetFile(files[0]).schema_arrow.names
    return "parquet-dataset" if "masks" in names else "parquet-records"


def _json_kind(path: Path) -> str:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EvalInputError([f"{path}: not readable JSON ({exc})"]) from exc
    if isinstance(data, list) and (not data or (isinstance(data[0], dict) and "conversations" in data[0])):
        return "geopixeld-json"
    if isinstance(data, dict):
        if "gcg_description" in data:
            return "geopixeld-json"
        if _glamm_body(data) is not None:
            return "glamm-json"
    raise EvalInputError([f"{path}: neither a GeoPixelD index or per-patch JSON nor a GLaMM prediction JSON "
                          f"(expected keys conversations, gcg_description, or caption/phrases/pred_masks)"])


# ---------------------------------------------------------------- shared checks


def _normalise_rle(rle, where: str, problems: list[str]) -> dict | None:
    """Our str-counts RLE from a compressed (str/bytes counts) or uncompressed (list counts) COCO RLE."""
    try:
        size = [int(v) for v in rle["size"]]
        counts = rle["counts"]
        if isinstance(counts, list):
            counts = mask_utils.frPyObjects({"size": size, "counts": counts}, size[0], size[1])["counts"]
        if isinstance(counts, bytes):
            counts = counts.decode("ascii")
        if not isinstance(counts, str):
            raise TypeError("counts must be a string or a list of run lengths")
        if len(size) != 2 or min(size) < 0 or _runs_total(counts) != size[0] * size[1]:
            raise ValueError(f"its runs do not cover the {size[0]}x{size[1]} it claims")
        return {"size": size, "counts": counts}
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        problems.append(f"{where}: not a COCO RLE ({type(exc).__name__}: {exc})")
        return None


def _runs_total(counts: str) -> int:
    """Pixels covered by a compressed COCO RLE string (pycocotools' rleFrString, in Python); -1 when malformed.

    pycocotools decodes any string without complaint, so a corrupt mask would silently score as garbage."""
    runs: list[int] = []
    p, n = 0, len(counts)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                return -1
            c = ord(counts[p]) - 48
            if not 0 <= c < 64:
                return -1
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        if x < 0:
            return -1
        runs.append(x)
    return sum(runs)


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


# ---------------------------------------------------------------- Parquet (records or release dataset)


def _read_parquet(files: list[Path], role: str, problems: list[str]) -> tuple[list[EvalImage], str]:
    out: list[EvalImage] = []
    failed = rejected = bare = 0
    for f in files:
        names = pq.ParquetFile(f).schema_arrow.names
        missing = [c for c in ("patch_id", "description", "phrases") if c not in names]
        if missing:
            problems.append(f"{f}: no column(s) {', '.join(missing)}; not GCG records or a GeoPixelD dataset shard")
            continue
        wanted = ("patch_id", "description", "phrases", "masks", "width", "height", "status", "curation_status")
        rows = pq.read_table(f, columns=[c for c in wanted if c in names]).to_pylist()
        for row in rows:
            if role == "ground truth" and row.get("status", "ok") != "ok":
                failed += 1
                continue
            if role == "ground truth" and row.get("curation_status") == "rejected":
                rejected += 1
                continue
            img = _from_row(row, f, problems, bare_ok=role != "ground truth")
            if img is not None:
                out.append(img)
                bare += sum(not ph.text for ph in img.phrases)
    skipped = ", ".join(s for s in (f"{failed} failed records" if failed else "",
                                    f"{rejected} rejected by curation" if rejected else "") if s)
    if role != "ground truth":
        return out, (f"{bare} predicted [SEG] without a <p> phrase </p> scored as empty phrases" if bare else "")
    return out, (f"left out of the ground truth as in the release: {skipped}" if skipped else "")


def _from_row(row: dict, source: Path, problems: list[str], bare_ok: bool = False) -> EvalImage | None:
    """`bare_ok` (predictions): a generated [SEG] with no `<p> phrase </p>` before it, whose mask the record does
    carry (`geopixeld predict` writes it with an empty tag), is scored as an empty phrase, as GLaMM's pipeline keeps
    every [SEG] mask: it counts for AP50 and mIoU and can never be recalled."""
    pid = row.get("patch_id")
    if not pid:
        problems.append(f"{source}: a row without patch_id")
        return None
    desc = row.get("description")
    texts, n_seg = phrases_of(desc)
    phrases = row.get("phrases") or []
    if bare_ok and len(texts) < n_seg == len(phrases) and "masks" not in row:
        texts = [phrase_text(p.get("tag") or "") if p.get("tag") else "" for p in phrases]
    if "masks" in row:  # release dataset rows: phrases point at masks by mask_id
        by_id = {m["mask_id"]: m for m in (row.get("masks") or [])}
        masks = []
        for p in phrases:
            m = by_id.get(p.get("mask_id"))
            masks.append((m["rle"] if m else None, len(m["object_ids"]) if m and m.get("object_ids") else None))
    else:
        masks = [(p.get("rle"), len(p["object_ids"]) if p.get("object_ids") else None) for p in phrases]
    return _assemble(str(pid), row.get("height"), row.get("width"), caption_text(desc), texts, n_seg, masks,
                     str(source), problems)


# ---------------------------------------------------------------- the released GeoPixelD layout


def _read_geopixeld(files: list[Path], problems: list[str], sizes: dict[str, tuple[int, int]]) -> list[EvalImage]:
    out = []
    for f in files:
        data = json.loads(f.read_text())
        if isinstance(data, dict):  # one per-patch JSON
            img = _from_per_patch(data, f, problems, sizes)
            if img is not None:
                out.append(img)
            continue
        for i, rec in enumerate(data):
            img = _from_index_entry(rec, i, f, problems, sizes)
            if img is not None:
                out.append(img)
    return out


def _locate(index_dir: Path, rel: str) -> Path | None:
    """A path written relative to the authors' repository root (`data/GeoPixelD/test/x.json`), found beside the
    index: as written, under its split folder, or by name; never outside the index's folder."""
    rel_path = Path(rel)
    for cand in (rel, str(Path(rel_path.parent.name) / rel_path.name), rel_path.name):
        try:
            p = resolve_inside(index_dir, cand)
        except UnsafePath:
            continue
        if p.is_file():
            return p
    return None


def _from_index_entry(rec, i: int, index: Path, problems: list[str], sizes) -> EvalImage | None:
    where = f"{index}: record {i}"
    if not isinstance(rec, dict):
        problems.append(f"{where}: not a JSON object")
        return None
    if isinstance(rec.get("segmentation"), list):  # the variant that carries one RLE per [SEG] inline
        image_id = Path(str(rec.get("image") or rec.get("id"))).stem
        bot = [c.get("value", "") for c in rec.get("conversations", []) if c.get("from") in ("gpt", "bot")]
        if not bot:
            problems.append(f"{where}: image {image_id}: no bot turn in conversations")
            return None
        texts, n_seg = phrases_of(bot[0])
        return _assemble(image_id, None, None, caption_text(bot[0]), texts, n_seg,
                         [(r, None) for r in rec["segmentation"]], str(index), problems)
    rel = rec.get("polygons")
    found = _locate(index.parent, rel) if isinstance(rel, str) and rel else None
    if found is None:
        problems.append(f"{where}: image {Path(str(rel or rec.get('image'))).stem}: per-patch JSON {rel!r} not found "
                        f"beside the index")
        return None
    try:
        per_patch = json.loads(found.read_text())
    except (OSError, ValueError) as exc:
        problems.append(f"{found}: not readable JSON ({exc})")
        return None
    return _from_per_patch(per_patch, found, problems, sizes)


def _from_per_patch(data: dict, path: Path, problems: list[str], sizes) -> EvalImage | None:
    image_id = Path(str(data.get("img") or path.name)).stem
    where = f"{path}: image {image_id}"
    desc, polygons = data.get("gcg_description"), data.get("polygons")
    if not isinstance(desc, str) or not isinstance(polygons, list):
        problems.append(f"{where}: needs gcg_description (text) and polygons (one entry per [SEG])")
        return None
    png = path.parent / Path(str(data.get("img") or f"{image_id}.png")).name
    if png.is_file():
        w, h = image_size(png)
    elif image_id in sizes:
        h, w = sizes[image_id]
    else:
        problems.append(f"{where}: cannot tell the image size (no {png.name} beside the JSON)")
        return None
    texts, n_seg = phrases_of(desc)
    masks = []
    for k, entry in enumerate(polygons):
        rle = _polygons_rle(entry, h, w, f"{where}: mask {k}", problems)
        masks.append((rle, len(entry) if rle is not None else None))
    if any(m[0] is None for m in masks):
        return None
    return _assemble(image_id, h, w, caption_text(desc), texts, n_seg, masks, str(path), problems)


def _polygons_rle(entry, h: int, w: int, where: str, problems: list[str]) -> dict | None:
    try:
        polys = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in entry]
    except (TypeError, ValueError) as exc:
        problems.append(f"{where}: polygons are not lists of [x, y] points ({exc})")
        return None
    for p in polys:
        if p.size and (p.min() < 0 or p[:, 0].max() > w or p[:, 1].max() > h):
            problems.append(f"{where}: polygon points reach ({p[:, 0].max():.0f}, {p[:, 1].max():.0f}) outside the "
                            f"{w}x{h} (w x h) image: a mask of the wrong size")
            return None
    mask = polygons_to_mask([p.round().astype(np.int32).tolist() for p in polys], h, w)
    return rle_ops.from_coco(mask_utils.encode(np.asfortranarray(mask)))


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


def _read_glamm(files: list[Path], problems: list[str]) -> list[EvalImage]:
    out = []
    for f in files:
        body = _glamm_body(json.loads(f.read_text()))
        if body is None:
            problems.append(f"{f}: not a GLaMM prediction JSON (caption, phrases, pred_masks)")
            continue
        image_id = str(body.get("image_id") or f.stem)
        if image_id.lower().endswith(IMAGE_SUFFIXES):
            image_id = Path(image_id).stem
        phrases = body.get("phrases") or []
        masks = body.get("pred_masks") or []
        caption = caption_text(body.get("caption") or "")
        if len(phrases) != len(masks):
            problems.append(f"{f}: image {image_id}: {len(phrases)} phrases but {len(masks)} masks")
            continue
        img = _assemble(image_id, None, None, caption, [phrase_text(str(p)) for p in phrases], len(masks),
                        [(m, None) for m in masks], str(f), problems)
        if img is not None:
            out.append(img)
    return out
