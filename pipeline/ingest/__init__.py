"""Readers turn a dataset on disk into `SourceImage`s, checking every record on the way.

Formats: `isaid` (COCO JSON + image folder), `isaid-masks` (the two mask PNGs beside each image),
`isaid-patches` (patches already cut by the iSAID devkit; names carry their window) and `coco` (any
COCO-style aerial dataset, categories mapped onto the vocabulary by the config).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.contracts.categories import ISAID, Category, Vocabulary
from pipeline.contracts.config import SourceConfig
from pipeline.contracts.quarantine import Quarantine
from pipeline.contracts.records import SourceImage


class SourceError(ValueError):
    """Input no run can go on without (missing annotation file, unreadable JSON, empty image folder)."""


@dataclass
class SourceDataset:
    root: Path
    split: str
    images: list[SourceImage]
    vocabulary: Vocabulary


def vocabulary_for(cfg: SourceConfig) -> Vocabulary:
    if not cfg.categories:
        return ISAID
    return Vocabulary(
        [
            Category(
                c.id,
                c.name,
                c.display or c.name.replace("_", " ").lower(),
                c.plural or (c.display or c.name.replace("_", " ").lower()) + "s",
                tuple(c.color),
                c.tier,
            )
            for c in cfg.categories
        ]
    )


def open_source(cfg: SourceConfig, quarantine: Quarantine, bounds_tolerance: float = 2.0) -> SourceDataset:
    """Read and check a dataset's index (annotations are parsed, pixels are not decoded)."""
    from pipeline.ingest import coco, masks_png, patches

    root = Path(cfg.root)
    if not root.is_dir():
        raise SourceError(f"{root}: dataset root is not a folder")
    vocab = vocabulary_for(cfg)
    fmt = cfg.format
    if fmt == "isaid" and cfg.annotations is None and not (root / annotation_file(cfg)).exists():
        fmt = "isaid-masks"  # the release's other layout: no JSON, the two mask PNGs beside each image
    if fmt == "isaid-masks":
        images = masks_png.read_mask_pairs(root, image_dir(cfg), quarantine)
    elif fmt == "isaid-patches":
        images = patches.read_devkit_patches(root, cfg, vocab, quarantine, bounds_tolerance)
    else:
        images = coco.read_coco(root, annotation_file(cfg), image_dir(cfg), vocab, cfg, quarantine, bounds_tolerance)
    skip = set(cfg.skip_images)
    images = [im for im in images if im.name not in skip and (im.parent or "") not in skip]
    images.sort(key=lambda im: im.name)
    return SourceDataset(root, cfg.split, images, vocab)


def annotation_file(cfg: SourceConfig) -> str:
    if cfg.annotations is not None:
        return str(cfg.annotations)
    if cfg.format == "coco":
        raise SourceError("the coco format needs `annotations` (the COCO JSON, relative to the root)")
    return f"{cfg.split}/Annotations/iSAID_{cfg.split}.json"


def image_dir(cfg: SourceConfig) -> str:
    return str(cfg.images) if cfg.images is not None else f"{cfg.split}/images"
