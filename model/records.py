"""The one typed record every model-side reader returns: a grounded patch, whatever file it came from.

Trainer, predict and eval read GCG record Parquet, the release dataset Parquet and the GeoPixelD JSON layout
through `model.sources`, which turns each row or entry into a `GroundedPatch` with this module's row codecs.
Masks stay as they are stored (COCO RLE or polygons) until a consumer asks for pixels, so indexing a split
costs no decoding. Everything here is pure: no file is opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.contracts.fileio import UnsafePath, resolve_inside
from pipeline.contracts.masks import compressed_counts

SEG = "[SEG]"


class DataError(ValueError):
    """A record that cannot be read or trained on; the message names the file and the record."""


@dataclass(frozen=True)
class Phrase:
    """One `<p> tag </p> [SEG]` of a description and the mask it grounds to."""

    tag: str  # the text inside <p> ... </p> as written ("tennis court-1"); "" for a [SEG] without a phrase
    start: int | None = None  # character span of `tag` in the description, where the source records it
    end: int | None = None
    tier: str | None = None  # "instance" or "group" (GCG schema 2 calls the column `kind`)
    objects: int | None = None  # objects the mask grounds; None when the source does not say
    rle: dict | None = None  # COCO RLE as stored (str, bytes or list counts); None when missing
    polygons: list | None = None  # GeoPixelD JSON: polygons ([x, y] points) unioned into the mask


@dataclass(frozen=True)
class GroundedPatch:
    """A patch, its grounded description and one phrase (with its mask) per [SEG], in caption order."""

    patch_id: str
    description: str | None
    phrases: tuple[Phrase, ...]
    height: int | None = None  # None when the source does not say (a GeoPixelD entry without its image)
    width: int | None = None
    split: str | None = None
    image_path: str | None = None  # as recorded, relative to `root`
    root: Path | None = None
    turns: tuple[tuple[str, str], ...] | None = None  # (human, bot) turns when the source carries them
    status: str = "ok"  # "ok" or "failed" (drafting); released rows are always ok
    curation_status: str | None = None
    source: str = ""  # the file it came from
    uid: str = ""  # "<file> row N (patch P)": what an error message names

    @property
    def image(self) -> Path:
        """The image file, checked to lie inside its root (a record never points outside its folder)."""
        if not self.image_path or self.root is None:
            raise DataError(f"{self.uid}: the record names no image")
        try:
            return resolve_inside(self.root, self.image_path)
        except UnsafePath as exc:
            raise DataError(f"{self.uid}: {exc}") from exc

    @property
    def kept(self) -> bool:
        """What the release keeps (and so what trains and what is ground truth): drafted ok, not rejected."""
        return self.status == "ok" and self.description is not None and self.curation_status != "rejected"

    def conversation(self, question: str) -> list[tuple[str, str]]:
        """The turns to train on: the source's own, else `question` answered by the description."""
        return list(self.turns) if self.turns else [(question, self.description or "")]


# -- row codecs (one per format) -------------------------------------------------------------------------------
def _objects(ids) -> int | None:
    return len(ids) if ids else None


def gcg_patch(row: dict, source: str, row_no: int, root: Path | None) -> GroundedPatch:
    """A GCG record row: the one place one is decoded. A whole row (any readable schema version) goes through
    `pipeline.contracts.gcg_schema.GCGRecord.from_row`; a prediction file carrying only the columns eval needs
    (patch_id, width, height, description, phrases with tag and rle) is read as far as it goes."""
    from pipeline.contracts.gcg_schema import GCGRecord

    pid = row.get("patch_id") or ""
    uid = f"{source} row {row_no} (patch {pid})"
    if row.get("schema_version") is not None:
        try:
            r = GCGRecord.from_row(row)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{uid}: not a GCG record ({type(exc).__name__}: {exc})") from exc
        phrases = tuple(Phrase(p.tag or "", p.start, p.end, p.tier, _objects(p.object_ids), p.rle) for p in r.phrases)
        return GroundedPatch(r.patch_id or "", r.description, phrases, r.height, r.width, r.split, r.image_path,
                             root, None, r.status or "ok", r.curation_status, source, uid)
    phrases = tuple(Phrase(p.get("tag") or "", p.get("start"), p.get("end"), p.get("tier", p.get("kind")),
                           _objects(p.get("object_ids")), p.get("rle")) for p in (row.get("phrases") or []))
    return GroundedPatch(pid, row.get("description"), phrases, row.get("height"), row.get("width"), row.get("split"),
                         row.get("image_path"), root, None, row.get("status") or "ok", row.get("curation_status"),
                         source, uid)


def dataset_patch(row: dict, source: str, row_no: int, root: Path | None) -> GroundedPatch:
    """A release dataset row (pipeline.contracts.dataset_schema): phrases point at their masks by `mask_id`."""
    pid = row.get("patch_id") or ""
    by_id = {m.get("mask_id"): m for m in (row.get("masks") or [])}
    phrases = []
    for p in row.get("phrases") or []:
        m = by_id.get(p.get("mask_id")) or {}
        phrases.append(Phrase(p.get("tag") or "", p.get("start"), p.get("end"), p.get("tier"),
                              _objects(m.get("object_ids")), m.get("rle")))
    image = row.get("image") or {}
    return GroundedPatch(pid, row.get("description"), tuple(phrases), row.get("height"), row.get("width"),
                         row.get("split"), image.get("path"), root, None, "ok", row.get("curation_status"), source,
                         f"{source} row {row_no} (patch {pid})")


def turns_of(conversations, uid: str) -> tuple[tuple[str, str], ...]:
    """GeoPixelD `conversations` as (human, bot) pairs; they must alternate, human first."""
    if not isinstance(conversations, list) or not conversations or len(conversations) % 2:
        raise DataError(f"{uid}: `conversations` must alternate human and bot turns")
    turns = []
    for q, a in zip(conversations[::2], conversations[1::2]):
        if not isinstance(q, dict) or not isinstance(a, dict) or q.get("from", "").lower() not in ("human", "user") \
                or a.get("from", "").lower() in ("human", "user"):
            raise DataError(f"{uid}: turns must go human, bot, human, bot, ...")
        turns.append((str(q.get("value", "")), str(a.get("value", ""))))
    return tuple(turns)


def geopixeld_patch(patch_id: str, description: str, turns, masks: list, kind: str, size: tuple[int, int] | None,
                    image_path: str | None, root: Path | None, source: str, uid: str) -> GroundedPatch:
    """A GeoPixelD entry: `masks` one per [SEG], polygons lists (`kind` "polygons") or RLEs ("segmentation").

    The layout records no phrase spans or tiers; a phrase's object count is its number of polygons."""
    from pipeline.contracts.grounding import PHRASE_RE

    tags = [m["text"] for m in PHRASE_RE.finditer(description or "")]
    phrases = []
    for k, m in enumerate(masks):
        tag = tags[k] if k < len(tags) else ""
        if kind == "polygons":
            phrases.append(Phrase(tag, objects=len(m) if isinstance(m, list) else None, polygons=m))
        else:
            phrases.append(Phrase(tag, rle=m))
    h, w = size if size else (None, None)
    return GroundedPatch(patch_id, description, tuple(phrases), h, w, None, image_path, root, turns, source=source,
                         uid=uid)


# -- masks -----------------------------------------------------------------------------------------------------
def normalise_rle(rle) -> dict:
    """Our RLE ({size [h, w], counts str}) from a compressed (str/bytes counts) or uncompressed (list counts)
    COCO RLE; ValueError when it is not one, including strings whose runs do not cover h x w (pycocotools decodes
    any string without complaint, so a corrupt mask would silently become garbage)."""
    from pycocotools import mask as mask_utils

    try:
        size = [int(v) for v in rle["size"]]
        counts = rle["counts"]
        if isinstance(counts, list):
            counts = mask_utils.frPyObjects({"size": size, "counts": counts}, size[0], size[1])["counts"]
        if isinstance(counts, bytes):
            counts = counts.decode("ascii")
        if not isinstance(counts, str):
            raise TypeError("counts must be a string or a list of run lengths")
        try:
            runs = compressed_counts(counts)
        except ValueError:  # a character outside the RLE alphabet, or a cut-off value
            runs = [-1]
        if len(size) != 2 or min(size) < 0 or min(runs, default=0) < 0 or sum(runs) != size[0] * size[1]:
            raise ValueError(f"its runs do not cover the {size[0]}x{size[1]} it claims")
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"not a COCO RLE ({type(exc).__name__}: {exc})") from exc
    return {"size": size, "counts": counts}


def polygons_rle(polygons, height: int, width: int) -> dict:
    """Our RLE of a phrase's polygons filled at the image's size; ValueError when a point lies outside it (the
    polygons were drawn for an image of another size)."""
    from pycocotools import mask as mask_utils

    from pipeline.contracts import masks as rle_ops
    from pipeline.contracts.geopixeld_format import polygons_to_mask

    try:
        polys = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polygons]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"polygons are not lists of [x, y] points ({exc})") from exc
    for p in polys:
        if p.size and (p.min() < 0 or p[:, 0].max() > width or p[:, 1].max() > height):
            raise ValueError(f"polygon points reach ({p[:, 0].max():.0f}, {p[:, 1].max():.0f}) outside the "
                             f"{width}x{height} (w x h) image: a mask of the wrong size")
    mask = polygons_to_mask([p.round().astype(np.int32).tolist() for p in polys], height, width)
    return rle_ops.from_coco(mask_utils.encode(np.asfortranarray(mask)))


def phrase_rle(phrase: Phrase, height: int, width: int) -> dict:
    """The phrase's mask as our RLE at the image's size; ValueError naming what is wrong."""
    if phrase.polygons is not None:
        return polygons_rle(phrase.polygons, height, width)
    if phrase.rle is None:
        raise ValueError("the mask is missing")
    return normalise_rle(phrase.rle)


def patch_masks(patch: GroundedPatch, height: int, width: int) -> np.ndarray:
    """(n, H, W) uint8, one mask per phrase; DataError naming the record and the phrase whose mask is wrong."""
    from pipeline.contracts.masks import decode

    out = np.zeros((len(patch.phrases), height, width), np.uint8)
    for k, ph in enumerate(patch.phrases):
        try:
            rle = phrase_rle(ph, height, width)
        except ValueError as exc:
            raise DataError(f"{patch.uid}: phrase {k} ({ph.tag!r}) {exc}") from exc
        if rle["size"] != [height, width]:
            raise DataError(f"{patch.uid}: phrase {k} ({ph.tag!r}) mask is {rle['size'][1]}x{rle['size'][0]}, the "
                            f"patch is {width}x{height}")
        out[k] = decode(rle)
    return out
