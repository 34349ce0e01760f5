"""Inference: a tiny model trained on one patch grounds every [SEG] it generates, and `predict` writes one mask per
generated [SEG] as GCG Parquet rows that a rerun keeps. No assertion depends on what training reached on this
CPU: the generated tokens are fixed by a scripted head where the text matters."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.contracts.gcg_schema import GCG_SCHEMA
from pipeline.contracts.grounding import PHRASE_RE as PHRASE_MARKUP
from pipeline.contracts.masks import decode

pytestmark = pytest.mark.usefixtures("gp_one_thread")


class ScriptedHead(torch.nn.Module):
    """In place of the LM head: greedy decoding emits `script`, then the stop token, and starts over for the next
    image. What a tiny model reaches in a few training steps depends on the CPU's floating-point path (an AMD
    CPU decodes another caption than an Intel one), so the tests fix the tokens and let everything else run for
    real: the decoder with its KV cache, the hidden states at each [SEG], the projector and the SAM2 decoder."""

    def __init__(self, script: list[int], stop: int, vocab: int):
        super().__init__()
        self.script, self.vocab, self.i = list(script) + [stop], vocab, 0

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        logits = torch.full((*h.shape[:-1], self.vocab), -1e4, dtype=h.dtype, device=h.device)
        logits[..., self.script[self.i]] = 0.0
        self.i = (self.i + 1) % len(self.script)
        return logits


def scripted(model, enc, text: str):
    """The model with its head replaced so that it generates `text` (its tokens as the tokenizer splits them)."""
    model.output = ScriptedHead(enc.tok.encode(text, add_special_tokens=False), enc.ids.eos, model.cfg.lm.vocab_size)
    return model


@pytest.fixture(scope="module")
def fitted(gp_dataset, gp_tiny, tmp_path_factory):
    """A tiny model trained for 30 steps on the first training patch, saved like OUT/final, and its losses."""
    from model.samples import collate
    from model.geopixel import build_model
    from model.lora import add_lora, merge_lora, set_trainable
    from model.weights import save_model

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    cfg, enc = gp_tiny
    torch.manual_seed(0)
    model = build_model(cfg, enc.ids)
    add_lora(model)
    set_trainable(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = collate([gp_dataset[0]], enc.ids.pad)
    model.train()
    losses = []
    for _ in range(30):
        loss = model(batch)["loss"]
        loss.backward()
        losses.append(loss.item())
        opt.step()
        opt.zero_grad()
    merge_lora(model)
    folder = tmp_path_factory.mktemp("fitted")
    save_model(model, folder, {"model": cfg.model_dump(mode="json")}, tokenizer=enc.tok)
    torch.set_num_threads(before)
    item = gp_dataset.item(0)
    answer_tokens = len(enc.tok.encode(item.turns[0][1], add_special_tokens=False))
    return folder, item, answer_tokens, losses


@pytest.mark.slow
def test_training_fits_one_patch(fitted):
    """Property of any CPU: 30 steps on one patch bring the loss well down (not to an exact value)."""
    *_, losses = fitted
    assert all(np.isfinite(losses)) and min(losses[-5:]) < 0.5 * losses[0]


@pytest.mark.slow
def test_generation_grounds_every_seg(fitted):
    from model.predict import load_for_inference, phrases_of, predict_image
    from pipeline.contracts.imageio import read_image

    folder, item, n_tokens, _ = fitted
    model, enc = load_for_inference(folder)
    rgb, _ = read_image(item.image)
    caption = item.turns[0][1]
    # whatever the trained model says unscripted, it has one mask per [SEG] it says
    text, masks = predict_image(model, enc, rgb, max_new_tokens=n_tokens)
    assert masks.shape == (text.count("[SEG]"), *rgb.shape[:2]) and masks.dtype == bool
    # scripted to say the caption: every [SEG] of it is grounded, in order, with a mask of the patch's size
    text, masks = predict_image(scripted(model, enc, caption), enc, rgb, max_new_tokens=4 * n_tokens)
    assert text == caption  # stopped by the stop token, markup kept
    n_seg = text.count("[SEG]")
    assert n_seg >= 3 and masks.shape == (n_seg, *rgb.shape[:2]) and masks.dtype == bool
    phrases, error = phrases_of(text, masks)
    assert error is None and len(phrases) == n_seg
    assert all(text[p["start"]:p["end"]] == p["tag"] and p["tag"] for p in phrases)
    assert [p["tag"] for p in phrases] == [m["text"] for m in PHRASE_MARKUP.finditer(caption)]


@pytest.mark.slow
def test_predict_writes_gcg_rows_and_resumes(fitted, gp_demo, tmp_path, monkeypatch):
    import model.predict as predict

    folder, item, n_tokens, _ = fitted
    real_load = predict.load_for_inference
    monkeypatch.setattr(predict, "load_for_inference",
                        lambda *a, **k: (lambda m, e: (scripted(m, e, item.turns[0][1]), e))(*real_load(*a, **k)))
    out = tmp_path / "pred"
    inputs = gp_demo / "out" / "train"
    counts = predict.run_predict(folder, inputs, out, max_new_tokens=4 * n_tokens, limit=2, shard_size=1,
                                 log=lambda *_: None)
    assert counts["patches"] == 2 and counts["skipped_shards"] == 0 and counts["ok"] == 2
    t = pq.read_table(out)
    assert t.schema.remove_metadata() == GCG_SCHEMA.remove_metadata()
    rows = t.to_pylist()
    row = rows[0]
    assert row["patch_id"] == item.patch_id and row["split"] == "train" and row["provenance"]["drafter"] == "geopixel"
    assert row["image_path"] == f"patches/{item.patch_id}.png"
    assert row["description"] == item.turns[0][1] and row["status"] == "ok"
    assert counts["masks"] == sum(len(r["phrases"]) for r in rows)
    for r in rows:
        assert len(r["phrases"]) == r["description"].count("[SEG]") >= 3
        assert all(decode(p["rle"]).shape == (r["height"], r["width"]) for p in r["phrases"])
    again = predict.run_predict(folder, inputs, out, max_new_tokens=4 * n_tokens, limit=2, shard_size=1,
                                log=lambda *_: None)
    assert again["skipped_shards"] == 2 and again["patches"] == 0
    with pytest.raises(ValueError, match="another model, input list or setting"):
        predict.run_predict(folder, inputs, out, max_new_tokens=10, limit=2, shard_size=1)


def test_phrase_spans_and_ungrounded_seg():
    from model.predict import phrases_of

    masks = np.zeros((2, 4, 5), bool)
    masks[0, 1, 1] = True
    text = "A <p> ship-1 </p> [SEG] and a stray [SEG] here."
    phrases, error = phrases_of(text, masks)
    assert [p["tag"] for p in phrases] == ["ship-1", ""]
    assert text[phrases[0]["start"]:phrases[0]["end"]] == "ship-1"
    assert decode(phrases[0]["rle"]).sum() == 1 and decode(phrases[1]["rle"]).shape == (4, 5)
    assert error == "1 [SEG] token(s) without a <p> ... </p> phrase before them"
