"""What every reader shares: the dataset a reader returns, its vocabulary, where its files are, and its error."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.contracts.categories import ISAID, Category, Vocabulary
from pipeline.contracts.config import SourceConfig
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


def annotation_file(cfg: SourceConfig) -> str:
    if cfg.annotations is not None:
        return str(cfg.annotations)
    if cfg.format == "coco":
        raise SourceError("the coco format needs `annotations` (the COCO JSON, relative to the root)")
    return f"{cfg.split}/Annotations/iSAID_{cfg.split}.json"


def image_dir(cfg: SourceConfig) -> str:
    return str(cfg.images) if cfg.images is not None else f"{cfg.split}/images"
