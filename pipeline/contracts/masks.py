"""COCO RLE helpers (pycocotools) that never rasterise a whole image per object.

Objects are held as a bounding-box crop plus its offset; `crop_to_rle` builds the patch-sized RLE from the
crop's column band only, which is ~10x cheaper than encoding a full 800x800 canvas per object.
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from pipeline.contracts.quarantine import brief


def crop_to_rle(crop: np.ndarray, x0: int, y0: int, height: int, width: int) -> dict:
    """COCO RLE (compressed, counts as str) of a crop placed at (x0, y0) in a height x width canvas."""
    ch, cw = crop.shape
    band = np.zeros((height, cw), dtype=np.uint8, order="F")
    band[y0 : y0 + ch, :] = crop
    flat = band.ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate(([0], change, [flat.size]))).tolist()
    if flat[0]:
        runs.insert(0, 0)
    runs[0] += x0 * height  # background columns left of the band
    tail = (width - x0 - cw) * height
    if tail:
        if len(runs) % 2 == 1:  # band ends on background
            runs[-1] += tail
        else:
            runs.append(tail)
    rle = mask_utils.frPyObjects({"size": [height, width], "counts": runs}, height, width)
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def to_coco(rle: dict) -> dict:
    """Our str-counts RLE -> the bytes form pycocotools functions expect."""
    counts = rle["counts"]
    return {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def from_coco(rle: dict) -> dict:
    counts = rle["counts"]
    return {"size": [int(v) for v in rle["size"]], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def decode(rle: dict) -> np.ndarray:
    """Full-size uint8 mask (H, W)."""
    return mask_utils.decode(to_coco(rle))


def area(rle: dict) -> int:
    return int(mask_utils.area(to_coco(rle)))


def bbox(rle: dict) -> tuple[float, float, float, float]:
    x, y, w, h = mask_utils.toBbox(to_coco(rle)).tolist()
    return (x, y, w, h)


def union(rles: list[dict]) -> dict:
    if len(rles) == 1:
        return dict(rles[0])
    return from_coco(mask_utils.merge([to_coco(r) for r in rles], intersect=False))


def iou(a: dict, b: dict) -> float:
    return float(mask_utils.iou([to_coco(a)], [to_coco(b)], [0])[0, 0])


def full_image_rle_to_crop(rle: dict, height: int, width: int) -> tuple[np.ndarray, int, int] | None:
    """Decode a source RLE (compressed or uncompressed) once into its bounding-box crop."""
    if isinstance(rle.get("counts"), list):
        rle = mask_utils.frPyObjects(rle, height, width)
    m = mask_utils.decode(to_coco(rle))
    ys, xs = np.nonzero(m)
    if ys.size == 0:
        return None
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    return np.ascontiguousarray(m[y0:y1, x0:x1]).astype(bool), int(x0), int(y0)


MAX_SIDE = 2**31 - 1  # RLE sizes are int32 in the plan schema and uint32 in pycocotools


def compressed_counts(counts: str | bytes) -> list[int]:
    """The run lengths of a compressed COCO RLE string (pycocotools' rleFrString, in Python, with checks).

    pycocotools decodes a malformed string without complaint (an empty one reads uninitialised memory), so a
    source RLE is parsed here first. Raises ValueError on a character outside '0'..'o' or a truncated value.
    """
    s = counts.encode("ascii") if isinstance(counts, str) else counts
    out: list[int] = []
    p, n = 0, len(s)
    while p < n:
        x = k = 0
        more = True
        while more:
            if p >= n:
                raise ValueError("the string ends inside a run length")
            c = s[p] - 48
            if not 0 <= c < 64:
                raise ValueError(f"character {chr(s[p])!r} at {p} is not an RLE character ('0'..'o')")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(out) > 2:
            x += out[-2]
        out.append(x)
    return out


def rle_problem(rle, height: int | None = None, width: int | None = None) -> str | None:
    """Why a source RLE cannot be decoded safely, or None: `size` two positive ints (equal to height x width
    when given), `counts` a compressed string or a list of non-negative ints, runs summing to h*w."""
    if not isinstance(rle, dict):
        return f"RLE is a {type(rle).__name__}, not an object with size and counts"
    size, counts = rle.get("size"), rle.get("counts")
    if not (isinstance(size, (list, tuple)) and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_SIDE for v in size)):
        return f"RLE size must be two positive integers [height, width], got {brief(size)}"
    h, w = size
    if height is not None and (h, w) != (height, width):
        return f"RLE size {[h, w]} differs from the image's [{height}, {width}]"
    if isinstance(counts, (str, bytes)):
        try:
            runs = compressed_counts(counts)
        except (ValueError, UnicodeEncodeError) as exc:
            return f"RLE counts is not a valid compressed string: {exc}"
    elif isinstance(counts, list):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in counts):
            return "RLE counts list holds something other than integers"
        runs = counts
    else:
        return f"RLE counts must be a compressed string or a list of run lengths, got {type(counts).__name__}"
    bad = next((v for v in runs if not 0 <= v <= 0xFFFFFFFF), None)
    if bad is not None:
        return f"RLE counts has a run length of {bad}; runs are non-negative 32-bit integers"
    if sum(runs) != h * w:
        return f"RLE runs cover {sum(runs)} pixels, not the {h}x{w} = {h * w} of its size"
    return None
