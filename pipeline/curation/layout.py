"""Where curation keeps its files, per split (all under the build's output root)."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.contracts.imageio import resolve_inside

_SPLIT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def split_dir(out: Path, split: str) -> Path:
    """OUT/<split>, refusing split names that are not plain folder names (they come from decision files too)."""
    if not _SPLIT.match(split) or split in (".", ".."):
        raise ValueError(f"split {split!r} is not a plain folder name")
    return resolve_inside(Path(out), split)


def records_dir(out: Path, split: str) -> Path:
    return split_dir(out, split) / "records"


def curated_dir(out: Path, split: str) -> Path:
    """The curated shards: the same GCG schema as records, decisions applied."""
    return split_dir(out, split) / "curated"


def curation_dir(out: Path, split: str) -> Path:
    return split_dir(out, split) / "curation"


def exports_dir(out: Path, split: str) -> Path:
    return curation_dir(out, split) / "exports"


def ledger_dir(out: Path, split: str) -> Path:
    return curation_dir(out, split) / "ledger"
