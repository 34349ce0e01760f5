"""Readers turn a dataset on disk into `SourceImage`s, checking every record on the way.

Formats: `isaid` (COCO JSON + image folder), `isaid-masks` (the two mask PNGs beside each image),
`isaid-patches` (patches already cut by the iSAID devkit; names carry their window) and `coco` (any
COCO-style aerial dataset, categories mapped onto the vocabulary by the config).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.contracts.config import SourceConfig
from pipeline.contracts.quarantine import Quarantine
from pipeline.ingest import coco, masks_png, patches
from pipeline.ingest.source import SourceDataset, SourceError, annotation_file, image_dir, vocabulary_for

__all__ = ["SourceDataset", "SourceError", "open_source", "vocabulary_for"]


def open_source(cfg: SourceConfig, quarantine: Quarantine, bounds_tolerance: float = 2.0) -> SourceDataset:
    """Read and check a dataset's index (annotations are parsed, pixels are not decoded)."""
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
