"""What every reader hands to the metrics: one image with its tag-free caption and its grounded phrases.

Both sides (ground truth and predictions) are brought to this one shape, so the metrics never see a file
format. Text helpers follow GLaMM's post-processing: phrase texts are what stands inside `<p> ... </p>`,
captions have every piece of grounding markup removed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.contracts.grounding import PHRASE_RE, strip_tags

_TAG_SUFFIX = re.compile(r"-\d+$")
_MARKUP = re.compile(r"</?p>|\[SEG\]")
SEG = "[SEG]"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


class EvalInputError(ValueError):
    """Prediction or ground-truth files that cannot be scored as they are; `problems` names each image."""

    def __init__(self, problems: list[str], limit: int = 25):
        self.problems = list(problems)
        shown = self.problems[:limit]
        more = len(self.problems) - len(shown)
        text = "\n".join(f"  - {p}" for p in shown) + (f"\n  ... and {more} more" if more > 0 else "")
        super().__init__(f"{len(self.problems)} problem(s) in the evaluation inputs:\n{text}")


@dataclass(frozen=True)
class EvalPhrase:
    text: str  # the phrase inside <p> ... </p>, a trailing `-k` tag number removed
    rle: dict  # COCO RLE, `counts` as str, `size` [h, w]
    objects: int | None = None  # objects the phrase grounds (ground truth); None when the source does not say


@dataclass
class EvalImage:
    image_id: str
    height: int
    width: int
    caption: str  # tag-free caption (what METEOR and CIDEr score)
    phrases: list[EvalPhrase] = field(default_factory=list)
    source: str = ""  # file the record came from, for error messages


def phrase_text(raw: str) -> str:
    """`tennis court-1` -> `tennis court`: the released tags carry a running number that is no part of the phrase."""
    return _TAG_SUFFIX.sub("", raw.strip()).strip()


def caption_text(description: str | None) -> str:
    """A grounded description without its markup; stray `<p>`, `</p>` or `[SEG]` are removed too (as GLaMM does)."""
    if not description:
        return ""
    text = _MARKUP.sub(" ", strip_tags(description))
    return re.sub(r"\s+([,.;:])", r"\1", re.sub(r"\s+", " ", text)).strip()


def phrases_of(description: str | None) -> tuple[list[str], int]:
    """(phrase texts in caption order, number of [SEG] tokens) of a grounded description."""
    if not description:
        return [], 0
    return [phrase_text(m["text"]) for m in PHRASE_RE.finditer(description)], description.count(SEG)


def image_key(name: str) -> str:
    """The key of an image named in GLaMM's files: `sa_1.jpg` and `sa_1` are one image (GLaMM's infer.py names
    each prediction after the image file without its extension)."""
    return name[: -len(Path(name).suffix)] if name.lower().endswith(IMAGE_SUFFIXES) else name
