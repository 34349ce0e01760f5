"""The build's curation stage (flows/build.py, task `stage-curation`)."""

from __future__ import annotations

from pathlib import Path

from pipeline.contracts.shards import read_manifest
from pipeline.curation import ledger
from pipeline.curation.curated import compute, rebuild
from pipeline.curation.export import ExportFilter, ExportResult, SheetSettings, export_sheets
from pipeline.contracts.layout import curated_dir


def stage_for_build(out: Path, split: str, policy: str | None = None, settings: SheetSettings | None = None) -> dict:
    """For a split that must be curated: bring the curated shards up to date with the records and the ledger, and
    export sheets of the patches still undecided (an unchanged selection is not written again). Returns the
    counts for the build's stage table."""
    out = Path(out)
    if ledger.shards(out, split) or read_manifest(curated_dir(out, split)):
        summary = rebuild(out, split, policy).summary
    else:
        summary = compute(out, split, policy).summary
    exported = ExportResult(split, None, None)
    if not summary.complete:
        exported = export_sheets(out, split, ExportFilter(), settings, policy)
    return {"patches": summary.patches, "decided": summary.decided, "sheets": len(exported.sheets),
            "sheets in": str(exported.folder or "")}
