"""Loading weights from local folders by name: our own saves, an InternLM-XComposer-style base plus a SAM2 file,
and the errors for anything that does not fit."""

from __future__ import annotations

import re

import pytest
import torch
from safetensors.torch import save_file

from model.config import build_config
from model.geopixel import build_model
from model.weights import LoadReport, WeightsError, load_pretrained, load_weights, save_model

pytestmark = pytest.mark.usefixtures("gp_one_thread")


@pytest.fixture
def tiny(gp_tiny):
    cfg, enc = gp_tiny
    torch.manual_seed(0)
    return cfg, enc, build_model(cfg, enc.ids)


def test_save_and_load_round_trip(tiny, tmp_path):
    cfg, enc, model = tiny
    save_model(model, tmp_path, {"model": cfg.model_dump(mode="json")}, enc.tok, shard_bytes=200_000)
    assert len(list(tmp_path.glob("model-*-of-*.safetensors"))) > 1  # sharded, with an index
    torch.manual_seed(1)
    other = build_model(cfg, enc.ids)
    report = load_weights(other, tmp_path)
    assert report.loaded == len(model.state_dict()) and not report.kept
    a, b = model.state_dict(), other.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_base_model_plus_sam2_file(tiny, tmp_path):
    """The InternLM-XComposer-2.5 route: no SAM2, no [SEG] projector, three vocabulary rows fewer."""
    cfg, enc, model = tiny
    sd = model.state_dict()
    base = {k: v.clone() for k, v in sd.items() if not k.startswith(("model.visual_model.", "model.text_hidden_fcs."))}
    for k in ("model.tok_embeddings.weight", "output.weight"):
        base[k] = base[k][:-3].clone()
    (tmp_path / "ixc").mkdir()
    save_file(base, str(tmp_path / "ixc" / "model.safetensors"))
    sam = {re.sub(r"(fuser\.layers\.\d+)\.weight$", r"\1.gamma", k[len("model.visual_model."):]): v.clone()
           for k, v in sd.items() if k.startswith("model.visual_model.")}
    torch.save({"model": sam}, tmp_path / "sam2_hiera_large.pt")
    torch.manual_seed(5)
    fresh = build_model(cfg, enc.ids)
    fcs_before = fresh.model.text_hidden_fcs[0][0].weight.clone()
    report = load_pretrained(fresh, ixc=tmp_path / "ixc", sam2=tmp_path / "sam2_hiera_large.pt")
    assert sorted(report.resized) == ["model.tok_embeddings.weight", "output.weight"]
    assert report.kept and all(k.startswith("model.text_hidden_fcs.") for k in report.kept)
    got = fresh.state_dict()
    emb = got["model.tok_embeddings.weight"]
    assert torch.equal(emb[:-3], base["model.tok_embeddings.weight"])
    torch.testing.assert_close(emb[-1], base["model.tok_embeddings.weight"].mean(0))
    assert all(torch.equal(got[k], sd[k]) for k in sd if k.startswith("model.visual_model."))
    assert torch.equal(fresh.model.text_hidden_fcs[0][0].weight, fcs_before)  # starts from its own init


def test_misfits_are_errors(tiny, tmp_path):
    cfg, enc, model = tiny
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    (tmp_path / "a").mkdir()
    save_file({**sd, "model.extra.weight": torch.zeros(2)}, str(tmp_path / "a" / "model.safetensors"))
    with pytest.raises(WeightsError, match="no place in this model, e.g. model.extra.weight"):
        load_weights(model, tmp_path / "a")
    (tmp_path / "b").mkdir()
    save_file({**sd, "vision_proj.0.weight": torch.zeros(3, 3)}, str(tmp_path / "b" / "model.safetensors"))
    with pytest.raises(WeightsError, match=r"vision_proj\.0\.weight has shape \(3, 3\)"):
        load_weights(model, tmp_path / "b")
    (tmp_path / "c").mkdir()
    save_file({k: v for k, v in sd.items() if k != "output.weight"}, str(tmp_path / "c" / "model.safetensors"))
    with pytest.raises(WeightsError, match="not in the checkpoint, e.g. output.weight"):
        load_weights(model, tmp_path / "c")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match="no model.safetensors"):
        load_weights(model, tmp_path / "empty")


def test_mode_branches_are_skipped_by_name(gp_tiny, tmp_path):
    cfg, enc = gp_tiny
    with_modes = build_config({"preset": "tiny", "lm": {"mode_loras": True}})
    full = build_model(with_modes, enc.ids)
    save_file({k: v.contiguous() for k, v in full.state_dict().items()}, str(tmp_path / "model.safetensors"))
    report = load_weights(build_model(cfg, enc.ids), tmp_path)
    assert isinstance(report, LoadReport)
    assert len(report.skipped) == cfg.lm.num_layers * 5 * 6
    assert all(re.search(r"\.lora_(sft|dpo|web)_[AB]\.weight$", k) for k in report.skipped)
