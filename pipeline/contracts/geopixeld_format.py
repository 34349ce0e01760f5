"""The released GeoPixelD format: an index JSON plus one per-patch JSON with `polygons` (written by
pipeline/release/geopixeld.py, read by the trainer and eval).

Per-patch JSON: {id, img, gcg_description, polygons}; `polygons` has one entry per [SEG] in caption order,
each a list of polygons ([x, y] integer points) unioned into that phrase's mask. Polygons are traced with
OpenCV (outer contours, every boundary pixel), which reproduces the released sample point for point.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.contracts.grounding import PHRASE_RE

GCG_QUESTION = (
    "Could you perform an in-depth analysis of this photo, including interleaved segmentation masks to map "
    "each part of your answer to specific image object?"
)


def mask_to_polygons(mask: np.ndarray) -> list[list[list[int]]]:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return [c[:, 0, :].tolist() for c in contours]


def polygons_to_mask(polygons: list[list[list[int]]], height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    for poly in polygons:
        cv2.fillPoly(mask, [np.asarray(poly, np.int32)], 1)
    return mask


def released_record(record_id: int, patch_id: str, description: str, phrase_masks: list[np.ndarray],
                    prefix: str, split: str) -> tuple[dict, dict]:
    """(index entry, per-patch JSON) of one patch; phrase_masks in caption order, one per [SEG]."""
    n_seg = description.count("[SEG]")
    if n_seg != len(phrase_masks) or len(PHRASE_RE.findall(description)) != n_seg:
        raise ValueError(f"{patch_id}: {n_seg} [SEG] tokens but {len(phrase_masks)} masks")
    img = f"{prefix}/{split}/{patch_id}.png"
    per_patch = {"id": record_id, "img": img, "gcg_description": description,
                 "polygons": [mask_to_polygons(m) for m in phrase_masks]}
    index = {"id": record_id,
             "conversations": [{"from": "human", "value": GCG_QUESTION}, {"from": "bot", "value": description}],
             "image": img, "polygons": f"{prefix}/{split}/{patch_id}.json"}
    return index, per_patch

