"""The full-size configuration declares every tensor the released checkpoints hold, with the same shape.

The expected names and shapes (tests/model/manifest/*.json) were generated from the released GeoPixel code itself
(make_released_manifest.py instantiates its classes on the meta device); the model here is built on the meta
device too, so no 7B tensor is allocated.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

MANIFESTS = Path(__file__).parent / "manifest"


def _expected(name: str) -> dict[str, list[int]]:
    return json.loads((MANIFESTS / name).read_text())["parameters"]


@pytest.fixture(scope="module")
def full_model():
    from model.config import build_config
    from model.geopixel import SpecialIds, build_model

    ids = SpecialIds(bos=1, eos=2, pad=0, seg=92544, phrase_open=92545, phrase_close=92546, turn_start=92543,
                     turn_end=92542)
    return build_model(build_config("geopixel-7b"), ids, device="meta")


def _declared(model) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def test_geopixel7b_every_tensor_declared_with_its_shape(full_model):
    ours, released = _declared(full_model), _expected("geopixel7b.json")
    assert len(released) == 2808
    assert sorted(set(released) - set(ours)) == []  # nothing of the checkpoint lacks a home
    assert sorted(set(ours) - set(released)) == []  # nothing we declare is absent from it
    assert {k: v for k, v in ours.items() if released[k] != v} == {}


def test_internlm_xcomposer_base_loads_into_the_same_model(full_model):
    """IXC-2.5 holds the same LM/CLIP tensors; only the vocabulary is 3 rows shorter (the loader grows it)."""
    ours, base = _declared(full_model), _expected("ixc2d5_7b.json")
    assert set(base) <= set(ours)
    differ = {k for k in base if base[k] != ours[k]}
    assert differ == {"model.tok_embeddings.weight", "output.weight"}
    for k in differ:
        assert base[k][0] + 3 == ours[k][0] and base[k][1:] == ours[k][1:]
    new = {k.split(".")[1] for k in set(ours) - set(base)}
    assert new == {"visual_model", "text_hidden_fcs"}  # SAM2 (its own checkpoint) and the [SEG] projector


def test_sam2_checkpoint_names_map_onto_visual_model(full_model):
    """SAM2's own file holds the `visual_model` subtree, with `gamma` for the ConvNeXt layer scale."""
    from model.weights import sam2_rename

    sam = {k[len("model.visual_model."):]: v for k, v in _expected("geopixel7b.json").items()
           if k.startswith("model.visual_model.")}
    as_in_sam2_file = {re.sub(r"(fuser\.layers\.\d+)\.weight$", r"\1.gamma", k): v for k, v in sam.items()}
    ours = _declared(full_model.model.visual_model)
    assert {sam2_rename(k): v for k, v in as_in_sam2_file.items()} == ours
    assert sum(1 for k in as_in_sam2_file if k.endswith(".gamma")) == 2


def test_training_config_skips_only_the_unused_mode_branches():
    """`lm.mode_loras: false` (configs/train/paper.yaml) drops exactly the 'write'/'web' low-rank weights."""
    from model.config import build_config
    from model.geopixel import SpecialIds, build_model
    from model.weights import MODE_LORA_KEY

    cfg = build_config({"preset": "geopixel-7b", "lm": {"mode_loras": False}})
    model = build_model(cfg, SpecialIds(1, 2, 0, 92544, 92545, 92546, 92543, 92542), device="meta")
    ours, released = _declared(model), _expected("geopixel7b.json")
    dropped = set(released) - set(ours)
    assert set(ours) <= set(released)
    assert len(dropped) == 32 * 5 * 6 and all(MODE_LORA_KEY.search(k) for k in dropped)
    n = sum(_numel(released[k]) for k in dropped)
    assert 2.3e9 < n < 2.5e9  # 2.42B values: ~4.8 GB saved in bf16


def _numel(shape):
    out = 1
    for d in shape:
        out *= d
    return out
