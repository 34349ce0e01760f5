"""Drafted records of the tiny synthetic set (template drafter), planned once per session, copied per test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.drafting.stage import run_draft
from pipeline.planning.stage import run_plan
from tests.conftest import make_config


@pytest.fixture(scope="session")
def drafted_once(tiny_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("curation") / "out"
    run_plan(make_config(tiny_root, out), progress=False)
    run_draft(out, "val", progress=False)
    return out


@pytest.fixture
def drafted(drafted_once, tmp_path) -> Path:
    """A fresh copy of the drafted output root (split `val`) for one test."""
    out = tmp_path / "out"
    shutil.copytree(drafted_once, out)
    return out
