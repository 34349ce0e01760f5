"""Where curation keeps its files: re-exported from the build's one output layout (pipeline.contracts.layout)."""

from pipeline.contracts.layout import curated_dir, curation_dir, exports_dir, ledger_dir, records_dir, split_dir

__all__ = ["curated_dir", "curation_dir", "exports_dir", "ledger_dir", "records_dir", "split_dir"]
