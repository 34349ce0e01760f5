"""Writes gcg_v2_records.parquet and gcg_v2_plans.parquet: a few records exactly as GCG schema version 2 wrote them
(the template drafter over the tiny synthetic data, seed 0) and the plans they were drafted from.

Run it with the code of a version-2 release on the path, e.g. commit 46868a0:
    git -C /work/main archive 46868a0 pipeline prompts annotations | tar -x -C /tmp/v2
    PYTHONPATH=/tmp/v2 .venv/bin/python tests/pipeline/contracts/data/make_gcg_v2.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.contracts.config import PlanConfig
from pipeline.contracts.gcg_schema import GCG_SCHEMA_VERSION
from pipeline.drafting.stage import run_draft
from pipeline.planning.stage import run_plan
from pipeline.synthetic.isaid import generate

HERE = Path(__file__).parent


def main() -> None:
    assert GCG_SCHEMA_VERSION == 2, "run this with the code of a GCG schema 2 release on PYTHONPATH"
    with tempfile.TemporaryDirectory() as tmp:
        root, out = Path(tmp) / "tiny", Path(tmp) / "out"
        generate(root, scale="tiny", seed=0, patches=False, progress=False)
        run_plan(PlanConfig.model_validate({"source": {"root": str(root), "split": "val"},
                                            "output": {"out": str(out)}, "workers": 1}), progress=False)
        run_draft(out, "val", progress=False)
        records = pq.read_table(out / "val/records/records-00000.parquet")
        plans = pq.read_table(out / "val/plans/plans-00000.parquet")
        rows = records.to_pylist()
        # the two smallest records with both tiers, and one with a single tier when there is one
        both = [i for i, r in enumerate(rows) if {p["kind"] for p in r["phrases"]} == {"instance", "group"}]
        one = [i for i, r in enumerate(rows) if len({p["kind"] for p in r["phrases"]}) == 1]
        keep = sorted(sorted(both, key=lambda i: len(rows[i]["phrases"]))[:2] + one[:1])
        ids = [rows[i]["patch_id"] for i in keep]
        plan_ids = plans.column("patch_id").to_pylist()
        pq.write_table(records.take(keep), HERE / "gcg_v2_records.parquet", compression="zstd")
        pq.write_table(plans.take([plan_ids.index(i) for i in ids]), HERE / "gcg_v2_plans.parquet", compression="zstd")


if __name__ == "__main__":
    main()
