"""Fixtures of the GeoPixel model tests: the tiny demo build (real generator, planner and template drafter) and
a tiny tokenizer trained offline on its descriptions. Built once per session, in a few seconds."""

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
    """OUT with OUT/out/<split>/records (the `make demo` layout) and OUT/geopixeld (the released layout)."""
    from pipeline.cli import build_plan_config
    from pipeline.synthetic.isaid import generate
    from pipeline.drafting.stage import export_split, run_draft
    from pipeline.planning.stage import run_plan

    out = tmp_path_factory.mktemp("gp_demo")
    data, plans = out / "data", out / "out"
    generate(data, scale="tiny", seed=0, progress=False)
    for split in ("train", "val"):
        cfg = build_plan_config(None, {"source.root": str(data), "source.split": split, "output.out": str(plans),
                                       "workers": 1})
        run_plan(cfg, progress=False, overwrite=True)
        run_draft(plans, split, progress=False)
        export_split(plans, split, out / "geopixeld")
    return out


@pytest.fixture(scope="session")
def gp_tokenizer(gp_demo, tmp_path_factory):
    import pyarrow.parquet as pq

    from model.config import TokensConfig
    from model.tokenizer import build_tiny_tokenizer, load_tokenizer

    texts = pq.read_table(gp_demo / "out" / "train" / "records", columns=["description"])["description"].to_pylist()
    folder = tmp_path_factory.mktemp("gp_tok")
    build_tiny_tokenizer([t for t in texts if t], folder, TokensConfig())
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
    from model.data import GeoPixelDataset, resolve_sources

    cfg, enc = gp_tiny
    return GeoPixelDataset(resolve_sources(gp_demo, "train"), enc, cfg)


@pytest.fixture
def gp_train_config():
    """configs/train/tiny.yaml with dotted-key overrides: gp_train_config(**{"train.max_steps": 2})."""
    from model.train import load_train_config

    path = Path(__file__).resolve().parents[2] / "configs" / "train" / "tiny.yaml"
    return lambda **over: load_train_config(path, over)
