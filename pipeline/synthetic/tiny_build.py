"""A small build on synthetic data, the one recipe the tests and benchmarks share: generate (or reuse) a seeded
iSAID-format set, then plan and draft its splits through the real stages.

    out = tiny_build(tmp / "build", splits=("val",))      # tmp/build/data (source), tmp/build/out (OUT)
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from pipeline.contracts.config import PlanConfig
from pipeline.contracts.overrides import apply_overrides
from pipeline.drafting.stage import run_draft
from pipeline.planning.stage import run_plan
from pipeline.synthetic.isaid import generate


def plan_config(root: Path, out: Path, split: str = "val", workers: int = 1, **overrides) -> PlanConfig:
    """The PlanConfig of a test or benchmark build: the dataset at `root` planned into `out`, one worker unless asked;
    `overrides` are dotted keys or whole sections ({"tiling.patch_size": 400} or tiling={"patch_size": 400})."""
    data = {"source": {"root": str(root), "split": split}, "output": {"out": str(out)}, "workers": workers}
    for key, value in overrides.items():
        if isinstance(value, dict) and "." not in key:
            data.setdefault(key, {}).update(value)
        else:
            apply_overrides(data, {key: value})
    return PlanConfig.model_validate(data)


def tiny_build(root: Path, scale: str = "tiny", splits: Sequence[str] = ("train", "val"), seed: int = 0,
               source: Path | None = None, draft: bool = True, lmm=None, workers: int = 1, **overrides) -> Path:
    """Plan (and, with `draft`, draft: the template drafter, or vLLM with `lmm`) each split into root/out.

    The synthetic set is generated into root/data unless `source` names one already there. Returns OUT."""
    root = Path(root)
    source = Path(source) if source else root / "data"
    if not any((source / s / "Annotations").is_dir() for s in splits):
        generate(source, scale=scale, seed=seed, splits=tuple(splits), progress=False)
    out = root / "out"
    for split in splits:
        run_plan(plan_config(source, out, split, workers, **overrides), progress=False, overwrite=True)
        if draft:
            run_draft(out, split, progress=False, lmm=lmm)
    return out
