"""iSAID's mask-PNG pairs: `<name>_instance_id_RGB.png` and `<name>_instance_color_RGB.png` beside each image.

Only the index is read here; the pixels are decoded once per image by the planner.
"""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.contracts.fileio import UnsafePath, resolve_inside
from pipeline.contracts.quarantine import Issue, Quarantine
from pipeline.contracts.records import SourceImage
from pipeline.ingest.source import SourceError

ID_SUFFIX = "_instance_id_RGB"
COLOR_SUFFIX = "_instance_color_RGB"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
_DIGITS = re.compile(r"(\d+)")


def is_mask_file(path: Path) -> bool:
    return path.stem.endswith((ID_SUFFIX, COLOR_SUFFIX))


def list_images(root: Path, img_rel: str) -> list[tuple[str, Path]]:
    """(relative name, resolved path) of every image file in the folder, mask PNGs excluded."""
    folder = resolve_inside(root, img_rel) if img_rel not in ("", ".") else Path(root).resolve()
    if not folder.is_dir():
        raise SourceError(f"{folder}: image folder not found")
    out = []
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES and not is_mask_file(p):
            out.append((f"{img_rel}/{p.name}" if img_rel not in ("", ".") else p.name, p))
    if not out:
        raise SourceError(f"{folder}: no images (PNG, JPEG or GeoTIFF) found")
    return out


def attach_masks(img: SourceImage, root: Path, q: Quarantine) -> bool:
    """Find the two mask PNGs beside an image; report and return False when one is missing or unsafe."""
    base = img.rel_path.rsplit(".", 1)[0]
    try:
        id_path = resolve_inside(root, base + ID_SUFFIX + ".png")
        color_path = resolve_inside(root, base + COLOR_SUFFIX + ".png")
    except UnsafePath as exc:
        q.report(Issue("path-outside-root", img.rel_path, str(exc), image=img.name))
        return False
    for p in (id_path, color_path):
        if not p.is_file():
            q.report(Issue("mask-missing", str(p), f"mask PNG for image {img.name} does not exist", image=img.name))
            return False
    img.id_mask_path, img.color_mask_path = id_path, color_path
    return True


def image_id_from_name(name: str, fallback: int) -> int:
    m = _DIGITS.search(name)
    return int(m.group(1)) if m else fallback


def read_mask_pairs(root: Path, img_rel: str, q: Quarantine) -> list[SourceImage]:
    images = []
    for k, (rel, path) in enumerate(list_images(root, img_rel)):
        img = SourceImage(image_id=image_id_from_name(path.stem, k), name=path.stem, path=path, rel_path=rel,
                          width=None, height=None)
        if attach_masks(img, root, q):
            images.append(img)
    return images
