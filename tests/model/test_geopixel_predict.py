"""Inference: a tiny model fitted to one patch describes it again with its grounded phrases, and `predict` writes
one mask per generated [SEG] as GCG Parquet rows that a rerun keeps."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.contracts.gcg_schema import GCG_SCHEMA
from pipeline.contracts.masks import decode

pytestmark = pytest.mark.usefixtures("gp_one_thread")


@pytest.fixture(scope="module")
def fitted(gp_dataset, gp_tiny, tmp_path_factory):
    """A tiny model trained for 100 steps on the first training patch, saved like OUT/final."""
    from model.data import collate
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
    for _ in range(100):
        model(batch)["loss"].backward()
        opt.step()
        opt.zero_grad()
    merge_lora(model)
    folder = tmp_path_factory.mktemp("fitted")
    save_model(model, folder, {"model": cfg.model_dump(mode="json")}, tokenizer=enc.tok)
    torch.set_num_threads(before)
    item = gp_dataset.sources[0].load(gp_dataset.refs[0])
    answer_tokens = len(enc.tok.encode(item.turns[0][1], add_special_tokens=False))
    return folder, item, answer_tokens


@pytest.mark.slow
def test_generation_grounds_every_seg(fitted):
    from model.predict import load_for_inference, phrases_of, predict_image
    from pipeline.contracts.imageio import read_image

    folder, item, n_tokens = fitted
    model, enc = load_for_inference(folder)
    rgb, _ = read_image(item.image)
    # a 2-layer model cannot tell which "at the bottom." ends the text, so stop at the trained length
    text, masks = predict_image(model, enc, rgb, max_new_tokens=n_tokens)
    assert text == item.turns[0][1]  # memorised, markup included
    n_seg = text.count("[SEG]")
    assert n_seg >= 3 and masks.shape == (n_seg, *rgb.shape[:2]) and masks.dtype == bool
    phrases, error = phrases_of(text, masks)
    assert error is None and len(phrases) == n_seg
    assert all(text[p["start"]:p["end"]] == p["tag"] and p["tag"] for p in phrases)


@pytest.mark.slow
def test_predict_writes_gcg_rows_and_resumes(fitted, gp_demo, tmp_path):
    from model.predict import run_predict

    folder, item, n_tokens = fitted
    out = tmp_path / "pred"
    counts = run_predict(folder, gp_demo / "out" / "train", out, max_new_tokens=n_tokens, limit=2, shard_size=1,
                         log=lambda *_: None)
    assert counts["patches"] == 2 and counts["skipped_shards"] == 0
    t = pq.read_table(out)
    assert t.schema.remove_metadata() == GCG_SCHEMA.remove_metadata()
    row = t.to_pylist()[0]
    assert row["patch_id"] == item.patch_id and row["split"] == "train" and row["provenance"]["drafter"] == "geopixel"
    assert row["image_path"] == f"patches/{item.patch_id}.png"
    assert row["description"] == item.turns[0][1] and row["status"] == "ok"
    for r in t.to_pylist():
        assert len(r["phrases"]) == r["description"].count("[SEG]")
        assert all(decode(p["rle"]).shape == (r["height"], r["width"]) for p in r["phrases"])
    again = run_predict(folder, gp_demo / "out" / "train", out, max_new_tokens=n_tokens, limit=2, shard_size=1,
                        log=lambda *_: None)
    assert again["skipped_shards"] == 2 and again["patches"] == 0
    with pytest.raises(ValueError, match="another model, input list or setting"):
        run_predict(folder, gp_demo / "out" / "train", out, max_new_tokens=10, limit=2, shard_size=1)


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
