"""iSAID's mask-PNG pairs: `<name>_instance_id_RGB.png` and `<name>_instance_color_RGB.png` beside each image.

Only the index is read here; the pixels are decoded once per image by the planner.
"""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.contracts.fileio import UnsafePath, path_kind, resolve_inside
from pipeline.contracts.quarantine import Issue, Quarantine, printable
from pipeline.contracts.records import SourceImage
from pipeline.ingest.source import SourceError, file_name_problem, id_problem

ID_SUFFIX = "_instance_id_RGB"
COLOR_SUFFIX = "_instance_color_RGB"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
_DIGITS = re.compile(r"(\d+)")


def is_mask_file(path: Path) -> bool:
    return path.stem.endswith((ID_SUFFIX, COLOR_SUFFIX))


def list_images(root: Path, img_rel: str, q: Quarantine) -> list[tuple[str, Path]]:
    """(relative name, resolved path) of every image file in the folder, mask PNGs excluded.

    Names that are not UTF-8 and entries that are not regular files (FIFOs, sockets, devices: never opened)
    are reported to `q` and left out.
    """
    folder = resolve_inside(root, img_rel) if img_rel not in ("", ".") else Path(root).resolve()
    if not folder.is_dir():
        raise SourceError(f"{folder}: image folder not found")
    out = []
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in IMAGE_SUFFIXES or is_mask_file(p):
            continue
        problem = file_name_problem(p.name)
        kind = path_kind(p) if problem is None else "regular"
        if problem is not None or kind != "regular":
            q.report(Issue("file-name-invalid" if problem else "image-not-regular-file", printable(str(folder)),
                           problem or f"{p} is {kind}, not a regular file; it is not opened", image=printable(p.stem)))
            continue
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
        kind = path_kind(p)
        if kind == "missing":
            q.report(Issue("mask-missing", str(p), f"mask PNG for image {img.name} does not exist", image=img.name))
            return False
        if kind != "regular":
            q.report(Issue("mask-not-regular-file", str(p), f"mask PNG {p} is {kind}, not a regular file; it is not "
                           "opened", image=img.name))
            return False
    img.id_mask_path, img.color_mask_path = id_path, color_path
    return True


def image_id_from_name(name: str, fallback: int) -> int:
    """The first number in a file name (P0003 -> 3), else `fallback` (the image's place in the folder)."""
    m = _DIGITS.search(name)
    return int(m.group(1)) if m else fallback


def numbered_image(img: SourceImage, fallback: int, q: Quarantine) -> bool:
    """Give `img` the id its name carries; report and return False when that number leaves int64."""
    image_id = image_id_from_name(img.name, fallback)
    problem = id_problem(image_id, "the image id read from the file name,")
    if problem is not None:
        q.report(Issue("image-record-invalid", img.rel_path, problem, image=img.name))
        return False
    img.image_id = image_id
    return True


def read_mask_pairs(root: Path, img_rel: str, q: Quarantine) -> list[SourceImage]:
    images = []
    for k, (rel, path) in enumerate(list_images(root, img_rel, q)):
        img = SourceImage(image_id=None, name=path.stem, path=path, rel_path=rel, width=None, height=None)
        if numbered_image(img, k, q) and attach_masks(img, root, q):
            images.append(img)
    return images
