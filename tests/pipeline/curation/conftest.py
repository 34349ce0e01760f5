"""Drafted records of the tiny synthetic set (template drafter), planned once per session, copied per test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.synthetic.tiny_build import tiny_build


@pytest.fixture(scope="session")
def drafted_once(tiny_root, tmp_path_factory) -> Path:
    return tiny_build(tmp_path_factory.mktemp("curation"), splits=("val",), source=tiny_root)


@pytest.fixture
def drafted(drafted_once, tmp_path) -> Path:
    """A fresh copy of the drafted output root (split `val`) for one test."""
    out = tmp_path / "out"
    shutil.copytree(drafted_once, out)
    return out
