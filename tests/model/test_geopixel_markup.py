"""The grounding-markup constraint at decoding time (model/markup.py): whatever the LM head prefers, every
generated `[SEG]` closes a non-empty `<p> ... </p>` phrase, every phrase gets its `[SEG]` and the answer never
ends inside a phrase, also when `max_new_tokens` cuts it; a well-formed answer passes unchanged. The heads here
are scripted or seeded noise, so nothing depends on what a model learns on this CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.contracts.grounding import PHRASE_RE

pytestmark = pytest.mark.usefixtures("gp_one_thread")


class MarkupLovingHead(torch.nn.Module):
    """In place of the LM head: seeded random logits that favour `<p>`, `</p>` and `[SEG]` (and sometimes the
    stop token, after 20 steps) at random steps, so plain greedy decoding writes broken markup."""

    def __init__(self, ids, vocab: int, seed: int):
        super().__init__()
        self.ids, self.vocab, self.step = ids, vocab, 0
        self.gen = torch.Generator().manual_seed(seed)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        logits = torch.randn((*h.shape[:-1], self.vocab), generator=self.gen)
        for tok, p in ((self.ids.phrase_open, 0.15), (self.ids.phrase_close, 0.25), (self.ids.seg, 0.25),
                       (self.ids.eos, 0.03 if self.step >= 20 else 0.0)):
            if torch.rand((), generator=self.gen) < p:
                logits[..., tok] = 10.0
        self.step += 1
        return logits.to(h.dtype)


def well_formed(text: str) -> bool:
    """Every [SEG] closes a non-empty phrase and no markup is left outside the phrases."""
    phrases = list(PHRASE_RE.finditer(text))
    rest = PHRASE_RE.sub("", text)
    return (all(m["text"].strip() for m in phrases) and text.count("[SEG]") == len(phrases)
            and not any(t in rest for t in ("<p>", "</p>", "[SEG]")))


@pytest.fixture(scope="module")
def random_model(gp_tiny):
    from model.geopixel import build_model

    cfg, enc = gp_tiny
    torch.manual_seed(0)
    return build_model(cfg, enc.ids).eval()


@pytest.fixture(scope="module")
def rules(gp_tiny):
    from model.markup import MarkupRules

    cfg, enc = gp_tiny
    return MarkupRules.from_encoder(enc, cfg.lm.vocab_size)


def test_whitespace_tokens_are_found(gp_tiny, rules):
    cfg, enc = gp_tiny
    spaces = rules.space.nonzero().flatten().tolist()
    assert spaces and all(not enc.tok.decode([i]).strip() for i in spaces)
    sep = enc.tok.encode("</p> [SEG]", add_special_tokens=False)  # `</p>`, ` `, `[SEG]`
    assert len(sep) == 3 and rules.space[sep[1]]
    for tid in (enc.ids.seg, enc.ids.phrase_open, enc.ids.phrase_close, enc.ids.eos, enc.ids.turn_end):
        assert not rules.space[tid]


def test_a_well_formed_answer_passes_unchanged(gp_dataset, gp_tiny, rules):
    """Every token of every training caption (and its stop token) is allowed where it stands."""
    cfg, enc = gp_tiny
    for i in range(len(gp_dataset)):
        caption = gp_dataset.item(i).turns[0][1]
        ids = enc.tok.encode(caption, add_special_tokens=False)
        state = rules.start()
        for k, tok in enumerate(ids + [enc.ids.turn_end]):
            assert state.allowed(cfg.lm.vocab_size, len(ids) + 1 - k)[tok], (caption, k)
            state.advance(tok)
        assert not state.inside


@pytest.mark.parametrize("seed", range(6))
def test_constrained_decoding_is_well_formed_whatever_the_head_prefers(gp_dataset, gp_tiny, random_model, rules, seed):
    from pipeline.contracts.imageio import read_image

    from model.predict import phrases_of, predict_image

    cfg, enc = gp_tiny
    rgb, _ = read_image(gp_dataset.item(0).image)
    random_model.output = MarkupLovingHead(enc.ids, cfg.lm.vocab_size, seed)
    free, _ = predict_image(random_model, enc, rgb, max_new_tokens=80)
    random_model.output = MarkupLovingHead(enc.ids, cfg.lm.vocab_size, seed)
    text, masks = predict_image(random_model, enc, rgb, max_new_tokens=80, markup=rules)
    assert not well_formed(free)  # the head alone breaks the markup ...
    assert well_formed(text)  # ... the constraint keeps it, with one mask per [SEG]
    assert masks.shape == (text.count("[SEG]"), *rgb.shape[:2])
    phrases, error = phrases_of(text, masks)
    assert error is None and all(p["tag"] for p in phrases)


@pytest.mark.parametrize("budget", [1, 3, 4, 5, 6, 9, 17])
def test_the_token_budget_never_cuts_a_phrase(gp_dataset, gp_tiny, random_model, rules, budget):
    """A head that opens a phrase at once and then never closes it: the budget forces `</p> [SEG]` in time."""
    from pipeline.contracts.imageio import read_image

    from model.samples import prompt_batch

    cfg, enc = gp_tiny
    word = enc.tok.encode(" ship", add_special_tokens=False)[0]

    class Opener(torch.nn.Module):
        def forward(self, h):
            logits = torch.zeros((*h.shape[:-1], cfg.lm.vocab_size), dtype=h.dtype)
            logits[..., enc.ids.phrase_open] = 3.0
            logits[..., word] = 2.0
            logits[..., enc.ids.phrase_close] = -5.0
            return logits

    rgb, _ = read_image(gp_dataset.item(0).image)
    random_model.output = Opener()
    p = prompt_batch(enc, rgb, cfg)
    ids, masks = random_model.generate({"input_ids": p["input_ids"], "image_mask": p["image_mask"]}, p["hd_image"],
                                       p["sam_image"], tuple(p["size"]), budget, rules)
    text = enc.decode(ids)
    assert len(ids) <= budget and well_formed(text) and masks.shape[0] == text.count("[SEG]")
    assert (text.count("[SEG]") == 1) == (budget >= 4)  # `<p>`, a word, `</p>`, `[SEG]` fit from 4 tokens on


def test_markup_state_machine():
    """The rules on bare ids: `[SEG]` only after `</p>` (two whitespace tokens between at most), `</p>` only after
    a word inside `<p>`, no stop inside a phrase."""
    from model.geopixel import SpecialIds
    from model.markup import MarkupRules

    ids = SpecialIds(bos=1, eos=2, pad=0, seg=3, phrase_open=4, phrase_close=5, turn_start=6, turn_end=7)
    space = torch.zeros(20, dtype=torch.bool)
    space[8] = True
    rules = MarkupRules(ids.phrase_open, ids.phrase_close, ids.seg, (ids.eos, ids.turn_end), space)
    s = rules.start()
    ok = lambda r=50: set(np.flatnonzero(s.allowed(20, r).numpy()).tolist())  # noqa: E731
    assert {3, 5}.isdisjoint(ok()) and {2, 4, 7, 9} <= ok() and 4 not in ok(3)
    s.advance(4)  # <p>
    assert {2, 3, 4, 5, 7}.isdisjoint(ok()) and 8 in ok() and 8 not in ok(3)
    s.advance(8)  # a space: still no word
    assert 5 not in ok()
    s.advance(9)  # a word
    assert 5 in ok() and {2, 3, 4, 7}.isdisjoint(ok()) and ok(2) == {5}
    s.advance(5)  # </p>
    assert ok() == {3, 8} and ok(1) == {3}
    s.advance(8)
    assert ok() == {3, 8}  # a second whitespace token (SentencePiece's `▁▁`), not a third
    s.advance(8)
    assert ok() == {3}
    s.advance(3)  # [SEG]
    assert not s.inside and {2, 4, 9} <= ok()
