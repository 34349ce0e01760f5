"""Curation: self-contained HTML sheets a curator opens in any browser, and their decisions brought back.

`export_sheets` writes the sheets of a split (docs/curation.md); `import_decisions` checks decision files, records
them in the ledger and writes the curated shards; `curation_summary` and `curated_records` are what the dataset
build reads; `stage_for_build` and `stage_flagged` are the build's curation stage. Names are imported on first use, so the command
line does not load OpenCV and Parquet to print its help.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "CurationSummary": "curated", "compute": "curated", "curated_records": "curated", "curation_summary": "curated",
    "rebuild": "curated", "DecisionFileError": "decisions", "MAX_BYTES": "decisions", "ExportFilter": "export",
    "ExportResult": "export", "RecordsNotReady": "export", "SheetSettings": "export", "export_sheets": "export",
    "ImportResult": "importer", "LedgerError": "ledger", "import_decisions": "importer", "POLICIES": "policies", "CurationError": "content",
    "stage_for_build": "stage", "stage_flagged": "stage",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
