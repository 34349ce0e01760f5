"""Well-formed grounding markup at decoding time: a logits constraint for `GeoPixel.generate`.

GeoPixel answers in `... <p> tag </p> [SEG] ...` markup, and `geopixeld predict` grounds a `[SEG]` only when it
closes a `<p> ... </p>` phrase. A model that has not (yet) learnt the markup well emits stray `</p>` or `[SEG]`,
or stops inside a phrase, and every such row fails. The constraint masks, at each greedy step, the tokens that
would break the markup, so the model's best *allowed* token is taken:

| state | allowed |
|---|---|
| outside a phrase | anything but `</p>` and `[SEG]`; `<p>` only while the token budget can still close a phrase |
| after `<p>`, no word yet | text: not `<p>`, `</p>`, `[SEG]`, a stop or another special token |
| inside a phrase | text or `</p>`; only `</p>` when the budget needs it |
| after `</p>` | `[SEG]`, after at most two whitespace-only tokens (`</p>`, ` `, `[SEG]`; `</p>`, `▁`, `▁`, `[SEG]`) |

(A byte-level BPE splits `</p> [SEG]` as `</p>`, ` `, `[SEG]`; a SentencePiece tokenizer with a dummy prefix, as
InternLM2's, as `</p>`, `▁`, `▁`, `[SEG]`.)

So every generated `[SEG]` closes a non-empty phrase, every `</p>` closes an open `<p>`, every phrase gets its
`[SEG]`, and the answer never ends (by a stop token or by `max_new_tokens`) inside a phrase. A model that already
writes well-formed markup decodes exactly as without it; one that never opens a phrase still writes none (the
constraint forbids, it never forces a `<p>`). `geopixeld predict --no-markup-constraint` turns it off.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

OUTSIDE, OPENED, INSIDE, CLOSED = range(4)
MAX_GAP = 2  # whitespace-only tokens allowed between `</p>` and `[SEG]`


@dataclass(frozen=True)
class MarkupRules:
    """The token ids the constraint needs: the three grounding tokens, the stop tokens and the whitespace-only
    tokens of the vocabulary (as a boolean mask over the LM head's outputs)."""

    phrase_open: int
    phrase_close: int
    seg: int
    stops: tuple[int, ...]
    space: torch.Tensor  # (vocab,) bool: tokens that decode to whitespace only
    silent: torch.Tensor | None = None  # (vocab,) bool: other special tokens (`<s>`, padding, turn start) and
    # ids past the tokenizer (unused rows of the LM head): they decode to nothing, so never inside a phrase

    @classmethod
    def from_encoder(cls, enc, vocab_size: int) -> "MarkupRules":
        """From a `model.tokenizer.ChatEncoder`: special tokens by id, whitespace tokens by decoding each id."""
        ids, tok = enc.ids, enc.tok
        special = set(getattr(tok, "all_special_ids", [])) | {ids.bos, ids.eos, ids.pad, ids.seg, ids.phrase_open,
                                                              ids.phrase_close, ids.turn_start, ids.turn_end}
        n = min(len(tok), vocab_size)
        texts = tok.batch_decode([[i] for i in range(n)], skip_special_tokens=False)
        space = torch.zeros(vocab_size, dtype=torch.bool)
        for i, t in enumerate(texts):
            if i not in special and not t.strip():  # "" too: a lone SentencePiece `▁` decodes to nothing
                space[i] = True
        markup = {ids.seg, ids.phrase_open, ids.phrase_close, ids.eos, ids.turn_end}
        silent = torch.zeros(vocab_size, dtype=torch.bool)
        silent[n:] = True
        silent[[i for i in special - markup if 0 <= i < vocab_size]] = True
        return cls(ids.phrase_open, ids.phrase_close, ids.seg, (ids.eos, ids.turn_end), space, silent)

    def start(self) -> "MarkupState":
        return MarkupState(self)


class MarkupState:
    """The constraint for one answer being decoded: `mask` the next token's logits, then `advance` by the token
    taken."""

    def __init__(self, rules: MarkupRules):
        self.rules, self.state, self.gap = rules, OUTSIDE, 0
        self._masks: dict = {}  # (vocab, device) -> (space, silent) there: copied once an answer, not every step

    def _on(self, vocab_size: int, device) -> tuple[torch.Tensor, torch.Tensor | None]:
        key = (vocab_size, str(device))
        if key not in self._masks:
            r = self.rules
            self._masks[key] = (r.space[:vocab_size].to(device),
                                None if r.silent is None else r.silent[:vocab_size].to(device))
        return self._masks[key]

    def allowed(self, vocab_size: int, remaining: int, device=None) -> torch.Tensor:
        """(vocab,) bool: the tokens that keep the markup well formed with `remaining` tokens left (this one
        included)."""
        r = self.rules
        space, silent = self._on(vocab_size, device)
        if self.state == CLOSED:
            ok = torch.zeros(vocab_size, dtype=torch.bool, device=device)
            ok[r.seg] = True
            if self.gap < MAX_GAP and remaining > 1:
                ok |= space
            return ok
        ok = torch.ones(vocab_size, dtype=torch.bool, device=device)
        ok[r.seg] = False
        if self.state == OUTSIDE:
            ok[r.phrase_close] = False
            if remaining < 4:  # `<p>`, a word, `</p>`, `[SEG]`
                ok[r.phrase_open] = False
            return ok
        ok[r.phrase_open] = False
        ok[list(r.stops)] = False
        if silent is not None:
            ok &= ~silent
        if self.state == OPENED:
            ok[r.phrase_close] = False
            if remaining <= 3:  # a word now, then `</p>`, `[SEG]`
                ok &= ~space
        elif remaining <= 2:  # INSIDE: `</p>` now, then `[SEG]`
            ok[:] = False
            ok[r.phrase_close] = True
        return ok

    def mask(self, logits: torch.Tensor, remaining: int) -> torch.Tensor:
        """`logits` (..., vocab) with the disallowed tokens at -inf."""
        ok = self.allowed(logits.shape[-1], max(remaining, 1), logits.device)
        return logits.masked_fill(~ok, float("-inf"))

    def advance(self, token: int) -> None:
        r, s = self.rules, self.state
        if s == OUTSIDE:
            self.state = OPENED if token == r.phrase_open else OUTSIDE
        elif s in (OPENED, INSIDE):
            if token == r.phrase_close:
                self.state, self.gap = CLOSED, 0
            elif s == OPENED and not bool(r.space[token]):
                self.state = INSIDE
        elif token == r.seg:
            self.state = OUTSIDE
        else:
            self.gap += 1

    @property
    def inside(self) -> bool:
        """True between a `<p>` and its `[SEG]`."""
        return self.state != OUTSIDE
