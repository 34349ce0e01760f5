"""Where a build keeps its files: the one module that knows the output layout.

    OUT/
      .geopixeld.lock                  one build at a time (driver.output_lock)
      <split>/
        plans/        plans-NNNNN.parquet + _manifest.json     (planning)
        patches/      <patch_id>.png                            (planning: patch images)
        som/          <patch_id>.png                            (planning: set-of-marks images)
        quarantine.jsonl                                        (planning: records refused, and why)
        records/      records-NNNNN.parquet + _manifest.json   (drafting: GCG records)
        lmm_cache.sqlite                                        (drafting: the reply cache)
        curation/     exports/<id>/ sheets, ledger/ decisions  (curation)
        curated/      records-NNNNN.parquet + _manifest.json   (curation: decisions applied)
      dataset/        the released dataset (release; `dataset.folder` may put it elsewhere)

Every stage asks this module for a path instead of joining names by hand, and `records_source` is the one rule
for where a split's records are: curated records win once curation has finished them.
"""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.contracts.fileio import resolve_inside
from pipeline.contracts.shards import RecordsNotReady, read_manifest, require_complete

_SPLIT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

LOCK_FILE = ".geopixeld.lock"
# image paths in plan and GCG rows are relative to the split folder: patches/<id>.png, som/<id>.png
PATCHES, MARKS = "patches", "som"


def check_split(split: str) -> str:
    """A split name is a plain folder name (it comes from configs and decision files)."""
    if not isinstance(split, str) or not _SPLIT.match(split) or split in (".", ".."):
        raise ValueError(f"split {split!r} is not a plain folder name (letters, digits, '_', '.', '-')")
    return split


def split_dir(out: Path, split: str) -> Path:
    """OUT/<split>."""
    return resolve_inside(Path(out), check_split(split))


def _under(*parts: str):
    """A function (out, split) -> OUT/<split>/<parts...>."""
    def path(out: Path, split: str) -> Path:
        return split_dir(out, split).joinpath(*parts)
    path.__doc__ = f"OUT/<split>/{'/'.join(parts)}"
    return path


plans_dir = _under("plans")
records_dir = _under("records")
curated_dir = _under("curated")  # the same GCG schema as records, decisions applied
curation_dir = _under("curation")
exports_dir = _under("curation", "exports")
ledger_dir = _under("curation", "ledger")
quarantine_file = _under("quarantine.jsonl")
reply_cache_file = _under("lmm_cache.sqlite")


def patch_image(patch_id: str) -> str:
    """A patch PNG's path relative to its split folder."""
    return f"{PATCHES}/{patch_id}.png"


def marks_image(patch_id: str) -> str:
    """A set-of-marks PNG's path relative to its split folder."""
    return f"{MARKS}/{patch_id}.png"


def dataset_dir(out: Path, folder: str | Path = "dataset") -> Path:
    """The released dataset: `folder` relative to OUT, or absolute."""
    p = Path(folder)
    return p if p.is_absolute() else Path(out) / p


def lock_file(out: Path) -> Path:
    return Path(out) / LOCK_FILE


def records_source(out: Path, split: str) -> Path:
    """Where a split's records are: the curated shards once curation has finished them, else the drafted ones.

    The release, the trainer, predict and eval all ask here, so none of them reads uncurated records while
    curated ones exist."""
    curated = curated_dir(out, split)
    m = read_manifest(curated) if curated.is_dir() else None
    if m and m.get("complete"):
        return curated
    return records_dir(out, split)


def drafted_records(out: Path, split: str) -> tuple[Path, dict]:
    """(records folder, its manifest) of a split whose drafting finished, else RecordsNotReady."""
    folder = records_dir(out, split)
    return folder, require_complete(folder, RecordsNotReady, f"run `geopixeld draft` for split {split!r} first")
