"""Verification: every grounded record is checked again from the files before it goes further.

The validate stage re-reads each record shard of a split and checks what drafting promised: each `[SEG]` has a
phrase whose span holds its tag, each mask decodes to the patch size and is not empty, and no markup is left
over once the grounded phrases are removed. A violation names the shard and the patch.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.contracts import masks
from pipeline.contracts.gcg_schema import GCGRecord, records_from_table
from pipeline.contracts.grounding import PHRASE_RE
from pipeline.contracts.layout import records_dir
from pipeline.contracts.shards import RecordsNotReady, require_complete


def validate_records(out: Path, split: str) -> Counter:
    """Check every grounded record again from the files: each `[SEG]` has a phrase whose span holds its tag, each
    mask decodes to the patch size and is not empty. Raises ValueError naming the shard and patch otherwise."""
    rec_dir = records_dir(out, split)
    manifest = require_complete(rec_dir, RecordsNotReady, f"run `geopixeld draft` for split {split!r} first")
    c = Counter()
    for name in sorted(manifest["shards"]):
        for r in records_from_table(pq.read_table(rec_dir / name)):
            c["records"] += 1
            if r.status != "ok":
                c["failed"] += 1
                continue
            problem = record_problem(r)
            if problem:
                raise ValueError(f"{rec_dir / name}, patch {r.patch_id}: {problem}")
            c["ok"] += 1
            c["phrases"] += len(r.phrases)
    return c


def record_problem(r: GCGRecord) -> str | None:
    """What is wrong with a grounded record, or None (pure: the record alone says it)."""
    found = list(PHRASE_RE.finditer(r.description or ""))
    if len(found) != len(r.phrases):
        return f"{len(found)} [SEG] phrases but {len(r.phrases)} grounded phrases"
    for p in r.phrases:
        if r.description[p.start:p.end].strip() != p.tag:
            return f"span {p.start}:{p.end} does not hold tag {p.tag!r}"
        if list(p.rle["size"]) != [r.height, r.width]:
            return f"mask of {p.tag!r} is {p.rle['size']}, not the patch size"
        if masks.area(p.rle) == 0:
            return f"mask of {p.tag!r} is empty"
    if re.search(r"</?p>|\[SEG\]", PHRASE_RE.sub("", r.description)):
        return "markup left after removing the grounded phrases"
    return None
