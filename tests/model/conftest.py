"""Fixtures of the GeoPixel model tests: a few patches in every layout (tests/model/data/make_records.py, no
pipeline stage runs) and a tiny tokenizer trained offline on their descriptions. Built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def gp_one_thread():
    """One torch thread for the test (tiny ops; two threads on a shared CPU can be 5x slower), then restored."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def gp_demo(tmp_path_factory) -> Path:
    """ROOT with ROOT/out/<split>/records (the `make demo` layout), ROOT/out/dataset (the release dataset) and
    ROOT/geopixeld (the released GeoPixelD layout), written by tests/model/data/make_records.py."""
    from tests.model.data.make_records import generate

    return generate(tmp_path_factory.mktemp("gp_demo"))


@pytest.fixture(scope="session")
def gp_tokenizer(gp_demo, tmp_path_factory):
    from model.config import TokensConfig
    from model.sources import open_source
    from model.tokenizer import build_tiny_tokenizer, load_tokenizer

    folder = tmp_path_factory.mktemp("gp_tok")
    build_tiny_tokenizer(open_source(gp_demo, "train").texts(), folder, TokensConfig())
    return load_tokenizer(folder, TokensConfig())


@pytest.fixture(scope="session")
def gp_tiny(gp_tokenizer):
    """(tiny config, chat encoder)."""
    from model.config import build_config
    from model.tokenizer import ChatEncoder

    cfg = build_config("tiny")
    return cfg, ChatEncoder(gp_tokenizer, cfg.tokens)


@pytest.fixture(scope="session")
def gp_dataset(gp_demo, gp_tiny):
    from model.samples import GeoPixelDataset
    from model.sources import open_source

    cfg, enc = gp_tiny
    return GeoPixelDataset([open_source(gp_demo, "train")], enc, cfg)


@pytest.fixture
def gp_train_config():
    """configs/train/tiny.yaml with dotted-key overrides: gp_train_config(**{"train.max_steps": 2})."""
    from model.train_config import load_train_config

    path = Path(__file__).resolve().parents[2] / "configs" / "train" / "tiny.yaml"
    return lambda **over: load_train_config(path, over)
