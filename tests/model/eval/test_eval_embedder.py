"""The phrase embedder: the packaged all-MiniLM-L6-v2 offline, a plain BERT folder pooled as GLaMM pools it."""

from __future__ import annotations

import numpy as np
import pytest

from model.eval.embedder import EmbedderError, PhraseEmbedder, default_embedder_path, resolve_embedder


def test_default_is_the_packaged_minilm_and_loads_offline(embedder, monkeypatch):
    assert embedder.path == default_embedder_path().resolve() and embedder.kind == "sentence-transformers"
    assert (embedder.path / "model.safetensors").is_file()
    s = embedder.similarity(["tennis court", "small vehicles"], ["tennis court", "tennis courts", "ship"])
    assert s.shape == (2, 3)
    assert s[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert s[0, 1] >= 0.5  # a plural still names the same thing
    assert s[0, 2] < 0.5 and s[1, 0] < 0.5  # different objects
    assert embedder.similarity([], ["ship"]).shape == (0, 1)


def test_setting_and_environment_choose_the_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("GEOPIXELD_EVAL_EMBEDDER", raising=False)
    assert resolve_embedder(None) == default_embedder_path().resolve()
    with pytest.raises(EmbedderError, match="not a local folder"):
        resolve_embedder("sentence-transformers/all-MiniLM-L6-v2")  # a hub name is never downloaded
    with pytest.raises(EmbedderError, match="neither modules.json"):
        resolve_embedder(tmp_path)
    monkeypatch.setenv("GEOPIXELD_EVAL_EMBEDDER", str(tmp_path / "absent"))
    with pytest.raises(EmbedderError, match="absent"):
        resolve_embedder(None)


def test_a_plain_bert_folder_is_mean_pooled_exactly_as_glamm(tmp_path):
    """GLaMM: tokenizer(text, max_length=512, truncation=True); mean of last_hidden_state[0] over all tokens."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from tests.model.eval.make_tiny_bert import make_tiny_bert

    folder = make_tiny_bert(tmp_path / "bert")
    emb = PhraseEmbedder(folder)
    assert emb.kind == "mean-pooled-encoder"
    texts = ["tennis court", "a group of small vehicles parked at the top left", "ship"]
    tok, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()

    def glamm(text):
        with torch.no_grad():
            out = model(**tok(text, return_tensors="pt", max_length=512, truncation=True))
        return torch.mean(out.last_hidden_state[0], dim=0).numpy()

    ref = np.stack([glamm(t) for t in texts])
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    assert emb.similarity(texts, texts) == pytest.approx(ref @ ref.T, abs=1e-5)  # batched with padding: same
