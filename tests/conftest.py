"""Shared fixtures: tiny synthetic iSAID-format datasets, generated once per session by the real generator."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import PlanConfig


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """iSAID layout (JSON + images + mask PNGs) plus the devkit patch layout under patches/."""
    from pipeline.demo_data import generate

    root = tmp_path_factory.mktemp("tiny")
    generate(root, scale="tiny", seed=0, patches=True, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_geotiff_root(tmp_path_factory) -> Path:
    from pipeline.demo_data import generate

    root = tmp_path_factory.mktemp("tiny_tif")
    generate(root, scale="tiny", seed=1, splits=("val",), geotiff=True, progress=False)
    return root


def make_config(root: Path, out: Path, **kw) -> PlanConfig:
    """A PlanConfig for tests: one worker unless asked, nested overrides as dicts."""
    data = {"source": {"root": str(root), "split": "val"}, "output": {"out": str(out)}, "workers": 1}
    for key, value in kw.items():
        if isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    return PlanConfig.model_validate(data)
