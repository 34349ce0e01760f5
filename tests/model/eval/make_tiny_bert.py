"""Build a tiny random-weight BERT folder offline (config.json, weights, vocab.txt) for the phrase-embedder tests.

It stands for a user's local bert-base-uncased: the same architecture and tokenizer class, a 40-word vocabulary,
2 layers of width 32. Usage: python tests/model/eval/make_tiny_bert.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

WORDS = ("tennis court courts small vehicles vehicle ship ships harbor storage tanks tank plane planes bridge "
         "the a of at top left right bottom group parked white green large").split()


def make_tiny_bert(out: Path, seed: int = 0) -> Path:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    BertModel(cfg).eval().save_pretrained(out)
    BertTokenizer(str(out / "vocab.txt"), do_lower_case=True).save_pretrained(out)
    return out


if __name__ == "__main__":
    print(make_tiny_bert(Path(sys.argv[1])))
