"""The released tokenizer's loading path (model/tokenizer.py `load_tokenizer`, reached by `choose_tokenizer` when a
training config names a weights folder and no tokenizer), on a SentencePiece model trained here.

InternLM-XComposer-2.5 and GeoPixel-7B ship InternLM2's tokenizer as a SentencePiece `tokenizer.model`, no
`tokenizer.json`, and a slow tokenizer class of their own named by `auto_map` in `tokenizer_config.json`
(opened with trust_remote_code). Their file cannot be downloaded here, so the folder below holds a tiny
SentencePiece BPE (byte fallback, InternLM2's `<unk>`/`<s>`/`</s>` ids and its two turn markers as pieces) and
a minimal remote-code class in the same shape (a `PreTrainedTokenizer` over `sentencepiece`). What is checked
is ours: the folder is opened by the remote-code branch, `[SEG]`, `<p>` and `</p>` are added as one id each,
and a grounded answer goes through the chat layout and back.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

spm = pytest.importorskip("sentencepiece", reason="sentencepiece is missing: pip install -e '.[train]'")

TURN_START, TURN_END = "[UNUSED_TOKEN_146]", "[UNUSED_TOKEN_145]"
CORPUS = [
    "The image is an aerial view of a harbor with ships, storage tanks and small vehicles.",
    "The tennis court at the top left has a green surface and white lines.",
    "Could you perform an in-depth analysis of this photo?",
    "Two planes are parked on the apron beside the terminal building.",
    "A roundabout joins three roads near the bridge over the river.",
] * 10

REMOTE_CODE = '''
import os
from shutil import copyfile

import sentencepiece as spm
from transformers.tokenization_utils import PreTrainedTokenizer


class InternLM2Tokenizer(PreTrainedTokenizer):
    """A SentencePiece slow tokenizer in the shape of InternLM2's (written for this test)."""

    vocab_files_names = {"vocab_file": "./tokenizer.model"}
    model_input_names = ["input_ids", "attention_mask"]
    _auto_class = "AutoTokenizer"

    def __init__(self, vocab_file, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>", **kwargs):
        self.vocab_file = vocab_file
        self.sp_model = spm.SentencePieceProcessor(model_file=vocab_file)
        super().__init__(unk_token=unk_token, bos_token=bos_token, eos_token=eos_token, pad_token=pad_token,
                         **kwargs)

    @property
    def vocab_size(self):
        return self.sp_model.get_piece_size()

    def get_vocab(self):
        vocab = {self.sp_model.id_to_piece(i): i for i in range(self.vocab_size)}
        vocab.update(self.added_tokens_encoder)
        return vocab

    def _tokenize(self, text):
        return self.sp_model.encode(text, out_type=str)

    def _convert_token_to_id(self, token):
        return self.sp_model.piece_to_id(token)

    def _convert_id_to_token(self, index):
        return self.sp_model.id_to_piece(index)

    def convert_tokens_to_string(self, tokens):
        return self.sp_model.decode(tokens)

    def save_vocabulary(self, save_directory, filename_prefix=None):
        out = os.path.join(save_directory, (filename_prefix + "-" if filename_prefix else "") + "tokenizer.model")
        if os.path.abspath(self.vocab_file) != os.path.abspath(out):
            copyfile(self.vocab_file, out)
        return (out,)
'''


def released_style_folder(folder: Path) -> Path:
    """tokenizer.model + tokenizer_config.json (auto_map) + tokenization_internlm2.py, as the released folders."""
    folder.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_writer=model, model_type="bpe", vocab_size=300,
        character_coverage=1.0, byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        user_defined_symbols=[TURN_START, TURN_END], hard_vocab_limit=False, num_threads=1,
        normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=True,
        minloglevel=2)
    (folder / "tokenizer.model").write_bytes(model.getvalue())
    (folder / "tokenization_internlm2.py").write_text(REMOTE_CODE)
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "auto_map": {"AutoTokenizer": ["tokenization_internlm2.InternLM2Tokenizer", None]},
        "tokenizer_class": "InternLM2Tokenizer", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "</s>",
        "unk_token": "<unk>", "clean_up_tokenization_spaces": False}))
    return folder


def test_a_sentencepiece_weights_folder_gets_the_grounding_tokens_and_round_trips(tmp_path):
    from model.config import build_config
    from model.tokenizer import ChatEncoder, load_tokenizer
    from model.train import choose_tokenizer
    from model.train_config import TrainConfig

    folder = released_style_folder(tmp_path / "internlm-xcomposer2d5-7b")
    base = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model")).get_piece_size()
    model_cfg = build_config("tiny")
    t = model_cfg.tokens
    # a training config naming only the weights folder reads its tokenizer (configs/train/paper.yaml)
    cfg = TrainConfig.model_validate({"weights": {"ixc": str(folder)}})
    tok = choose_tokenizer(cfg, tmp_path / "run", model_cfg, [])
    assert not tok.is_fast and type(tok).__name__ == "InternLM2Tokenizer"  # the folder's own (remote) class

    vocab = tok.get_vocab()
    grounding = [vocab[x] for x in (t.seg, t.phrase_open, t.phrase_close)]
    assert sorted(grounding) == [base, base + 1, base + 2] and len(tok) == base + 3  # appended, as GeoPixel-7B's
    enc = ChatEncoder(tok, t)
    assert (enc.ids.bos, enc.ids.eos, enc.ids.turn_start, enc.ids.turn_end) == (1, 2, 3, 4)

    answer = "The <p> storage tank-1 </p> [SEG] stands beside <p> small vehicles-2 </p> [SEG] near the harbor."
    e = enc.encode([("Describe the image.", answer)], n_image=5)
    assert e.input_ids.count(enc.ids.seg) == 2 and e.input_ids.count(enc.ids.phrase_open) == 2
    assert e.input_ids.count(enc.ids.turn_start) == 2 and e.input_ids.count(enc.ids.turn_end) == 2
    answer_ids = [i for i, lab in zip(e.input_ids, e.labels) if lab != -100]  # labels: the answer, its turn end
    assert answer_ids.count(enc.ids.seg) == 2 and answer_ids[-3] == enc.ids.turn_end and answer_ids[-1] == enc.ids.eos
    decoded = enc.decode(answer_ids)
    # every marker and word comes back; whitespace may not: the slow tokenizer encodes the text between added
    # tokens piece by piece, and SentencePiece's dummy prefix adds a space to each piece ("<p>  storage")
    assert " ".join(decoded.split()) == answer
    assert [m.strip() for m in re.findall(r"<p>(.*?)</p>", decoded)] == ["storage tank-1", "small vehicles-2"]
    for word in ("ünïcode", "°"):  # byte fallback: text outside the tiny vocabulary still round-trips
        assert tok.decode(tok.encode(word, add_special_tokens=False)) == word

    again = load_tokenizer(folder, t)  # opening the folder twice gives the same ids
    assert [again.get_vocab()[x] for x in (t.seg, t.phrase_open, t.phrase_close)] == grounding


def test_the_markup_constraint_reads_a_sentencepiece_vocabulary(tmp_path):
    """model/markup.py on the released tokenizer's kind: the whitespace pieces that `</p> [SEG]` splits into are
    found (`▁` twice; a lone `▁` decodes to nothing), the grounding tokens are not whitespace, and every token of
    a grounded answer (and its stop token) is allowed where it stands."""
    from model.config import build_config
    from model.markup import MarkupRules
    from model.tokenizer import ChatEncoder, load_tokenizer

    cfg = build_config("tiny")
    enc = ChatEncoder(load_tokenizer(released_style_folder(tmp_path / "tok"), cfg.tokens), cfg.tokens)
    rules = MarkupRules.from_encoder(enc, cfg.lm.vocab_size)
    for tid in (enc.ids.seg, enc.ids.phrase_open, enc.ids.phrase_close, enc.ids.eos, enc.ids.turn_end):
        assert not rules.space[tid]
    answer = "The <p> storage tank-1 </p> [SEG] stands beside <p> small vehicles-2 </p> [SEG] near the harbor."
    ids = enc.tok.encode(answer, add_special_tokens=False) + [enc.ids.turn_end]
    between = ids[ids.index(enc.ids.phrase_close) + 1: ids.index(enc.ids.seg)]
    assert 1 <= len(between) <= 2 and all(rules.space[i] for i in between)  # `▁`, `▁`: the dummy prefix's own
    state = rules.start()
    for k, tok in enumerate(ids):
        assert state.allowed(cfg.lm.vocab_size, len(ids) - k)[tok], (k, enc.tok.convert_ids_to_tokens(tok))
        state.advance(tok)
    assert not state.inside
