"""Tokenizers and the InternLM-XComposer chat layout with answer-only labels.

A sequence is `<s>` + image tokens + `[UNUSED_TOKEN_146]user\\n{question}[UNUSED_TOKEN_145]\\n
[UNUSED_TOKEN_146]assistant\\n` + `{answer}[UNUSED_TOKEN_145]\\n` + `</s>`; only the answer part (with its turn
end and `</s>`) carries labels. `[SEG]`, `<p>` and `</p>` are added tokens, one id each.

`build_tiny_tokenizer` trains a small byte-level BPE offline with the `tokenizers` library (tests and the CPU
demo); `load_tokenizer` opens a released tokenizer folder (InternLM-XComposer-2.5's SentencePiece tokenizer
needs the `sentencepiece` package and its own `tokenization_internlm2.py`, loaded with trust_remote_code).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from model.config import TokensConfig
from model.geopixel import SpecialIds

GROUNDING = ("seg", "phrase_open", "phrase_close")

BASE_CORPUS = [
    "The image is an aerial view of a harbor with ships, storage tanks and small vehicles.",
    "The tennis court at the top left has a green surface and white lines.",
    "Could you perform an in-depth analysis of this photo, including interleaved segmentation masks to map "
    "each part of your answer to specific image object?",
    "user\nassistant\n",
]


def special_tokens(t: TokensConfig) -> list[str]:
    return [t.bos, t.eos, t.turn_start, t.turn_end, t.seg, t.phrase_open, t.phrase_close]


def build_tiny_tokenizer(texts: list[str], out: Path, t: TokensConfig, vocab_size: int = 512):
    """Train a byte-level BPE on `texts` (plus a fixed corpus), save it to `out`, return it. Deterministic."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<unk>"] + special_tokens(t)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(BASE_CORPUS) + [x for x in texts if x], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=t.bos, eos_token=t.eos, unk_token="<unk>",
                                   pad_token="<unk>", additional_special_tokens=special_tokens(t)[2:],
                                   clean_up_tokenization_spaces=False, model_max_length=1 << 20)
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out)
    return fast


def load_tokenizer(path: Path, t: TokensConfig):
    """A saved tokenizer folder; the grounding tokens are added when missing (as GeoPixel's training does)."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    path = Path(path)
    if (path / "tokenizer.json").exists():
        tok = PreTrainedTokenizerFast.from_pretrained(path, local_files_only=True)
    else:  # the released InternLM2 SentencePiece tokenizer (remote code shipped inside the folder)
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=True, use_fast=False, local_files_only=True)
    missing = [x for x in (t.seg, t.phrase_open, t.phrase_close) if x not in tok.get_vocab()]
    if missing:
        tok.add_tokens(missing, special_tokens=True)
    if tok.pad_token is None:
        tok.pad_token = tok.unk_token or t.eos
    tok.clean_up_tokenization_spaces = False
    return tok


def special_ids(tok, t: TokensConfig) -> SpecialIds:
    """Every special token must be a single id of the vocabulary."""
    vocab = tok.get_vocab()
    ids = {}
    for field, text in (("bos", t.bos), ("eos", t.eos), ("seg", t.seg), ("phrase_open", t.phrase_open),
                        ("phrase_close", t.phrase_close), ("turn_start", t.turn_start), ("turn_end", t.turn_end)):
        if text not in vocab:
            raise ValueError(f"the tokenizer has no {text!r} token (needed as {field})")
        ids[field] = vocab[text]
    return SpecialIds(pad=tok.pad_token_id if tok.pad_token_id is not None else ids["eos"], **ids)


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    image_mask: list[bool]


class ChatEncoder:
    """Turns (question, answer) turns plus an image-token count into ids, labels and the image mask."""

    def __init__(self, tok, t: TokensConfig):
        self.tok, self.t = tok, t
        self.ids = special_ids(tok, t)

    def _enc(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False)

    def user(self, question: str) -> str:
        t = self.t
        return f"{t.turn_start}user\n{question.strip()}{t.turn_end}\n{t.turn_start}assistant\n"

    def encode(self, turns: list[tuple[str, str]], n_image: int) -> Encoded:
        ids = [self.ids.bos] + [self.ids.pad] * n_image
        labels = [-100] * len(ids)
        for question, answer in turns:
            q = self._enc(self.user(question))
            a = self._enc(f"{answer.strip()}{self.t.turn_end}\n")
            ids += q + a
            labels += [-100] * len(q) + a
        ids.append(self.ids.eos)
        labels.append(self.ids.eos)
        mask = [False] + [True] * n_image + [False] * (len(ids) - 1 - n_image)
        return Encoded(ids, labels, mask)

    def prompt(self, question: str, n_image: int) -> Encoded:
        ids = [self.ids.bos] + [self.ids.pad] * n_image + self._enc(self.user(question))
        return Encoded(ids, [-100] * len(ids), [False] + [True] * n_image + [False] * (len(ids) - 1 - n_image))

    def decode(self, ids: list[int]) -> str:
        """Generated ids -> text keeping `<p>`, `</p>` and `[SEG]` (other special tokens dropped)."""
        drop = {self.ids.bos, self.ids.eos, self.ids.turn_start, self.ids.turn_end, self.ids.pad}
        return self.tok.decode([i for i in ids if i not in drop], skip_special_tokens=False).strip()
