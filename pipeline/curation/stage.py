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
    if not summary.complete:  # the patches the verification flagged most come first
        exported = export_sheets(out, split, ExportFilter(order="risk"), settings, policy)
    return {"patches": summary.patches, "decided": summary.decided, "sheets": len(exported.sheets),
            "sheets in": str(exported.folder or "")}


def stage_flagged(out: Path, split: str, settings: SheetSettings | None = None) -> dict:
    """For a split released without curation, under the `flag` verification policy: sheets of the patches the
    verification flagged and no curator has decided yet, riskiest first (their decisions apply as any other)."""
    exported = export_sheets(Path(out), split, ExportFilter(flagged=True, order="risk"), settings)
    return {"patches": exported.patches, "sheets": len(exported.sheets), "sheets in": str(exported.folder or "")}
