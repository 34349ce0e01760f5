"""What every reader shares: the dataset a reader returns, its vocabulary, where its files are, and its error."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.contracts.categories import ISAID, Category, Vocabulary
from pipeline.contracts.config import SourceConfig
from pipeline.contracts.quarantine import brief, printable
from pipeline.contracts.records import SourceImage

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_SIDE = 2**31 - 1  # widths and heights are int32 in the plan schema


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
    return f"{cfg.folder}/Annotations/iSAID_{cfg.folder}.json"


def image_dir(cfg: SourceConfig) -> str:
    return str(cfg.images) if cfg.images is not None else f"{cfg.folder}/images"


class OversizedInt:
    """A JSON integer too long for Python to convert (over 4300 digits): kept as a marker so its record is
    quarantined instead of the whole file being refused."""

    def __init__(self, digits: str):
        self.digits = len(digits.lstrip("-"))

    def __repr__(self) -> str:
        return f"<an integer of {self.digits} digits>"


def id_problem(value, what: str) -> str | None:
    """Why `value` is not a usable record id (an int within int64; not a bool, float, string or list), or None."""
    if isinstance(value, OversizedInt):
        return f"{what} {value!r} is outside the int64 range"
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{what} {brief(value)} is not an integer"
    if not INT64_MIN <= value <= INT64_MAX:
        return f"{what} {brief(value)} is outside the int64 range"
    return None


def side_problem(w, h) -> str | None:
    """Why an image's width/height are unusable (positive ints within int32), or None."""
    ok = all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_SIDE for v in (w, h))
    return None if ok else f"width/height must be positive integers (at most {MAX_SIDE}), got {brief(w)}x{brief(h)}"


def file_name_problem(name) -> str | None:
    """Why `name` cannot name a file of the dataset (a non-empty UTF-8 string without NUL bytes), or None."""
    if not isinstance(name, str) or not name:
        return f"file name {brief(name)} is not a non-empty string"
    if "\x00" in name:
        return f"file name {printable(name)!r} contains a NUL byte"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return f"file name {printable(name)!r} is not valid UTF-8"
    return None
