"""Patches already cut by the iSAID devkit: `P0003_0_800_347_1147.png` carries its window in its name.

Annotations come from the devkit's patch JSON when there is one (`<split>/Annotations/iSAID_<split>.json`
or `annotations` in the config), else from the mask PNGs beside each patch. Patches are not re-tiled.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pipeline.contracts.categories import Vocabulary
from pipeline.contracts.config import SourceConfig
from pipeline.contracts.quarantine import Issue, Quarantine
from pipeline.contracts.records import SourceImage
from pipeline.contracts.tiling import parse_patch_name
from pipeline.ingest.source import annotation_file, image_dir
from pipeline.ingest.coco import read_coco
from pipeline.ingest.masks_png import attach_masks, list_images, numbered_image

_NUMBERED_TAIL = re.compile(r"_\d+$")


def read_devkit_patches(root: Path, cfg: SourceConfig, vocab: Vocabulary, q: Quarantine, tol: float = 2.0) -> list[SourceImage]:
    ann = annotation_file(cfg)
    if os.path.lexists(Path(root) / ann):  # a FIFO or folder in its place is refused there, not taken for absent
        candidates = read_coco(root, ann, image_dir(cfg), vocab, cfg, q, tol)
    else:
        candidates = []
        for k, (rel, path) in enumerate(list_images(root, image_dir(cfg), q)):
            img = SourceImage(image_id=k, name=path.stem, path=path, rel_path=rel, width=None, height=None)
            if attach_masks(img, root, q):
                candidates.append(img)
    images = []
    for img in candidates:
        img.untiled = True
        parsed = parse_patch_name(img.name)
        if parsed is None:
            if _NUMBERED_TAIL.search(img.name):
                q.report(Issue("patch-name-invalid", img.rel_path, f"{img.name!r} is not a devkit patch name "
                               "(P<id>_<y0>_<y1>_<x0>_<x1>, end after start)", image=img.name))
                continue
            images.append(img)  # an image the devkit copied whole (a side of 800 px or less)
            continue
        img.parent, img.pretiled = parsed
        if img.width is not None and (img.width, img.height) != (img.pretiled.width, img.pretiled.height):
            q.report(Issue("patch-size-mismatch", img.rel_path, f"the name says {img.pretiled.width}x"
                           f"{img.pretiled.height} but the JSON says {img.width}x{img.height}", image=img.name))
            continue
        if img.image_id is None and not numbered_image(img, 0, q):
            continue
        images.append(img)
    return images
