"""The merge: holistic, instance and group texts into one grounded description (GeoPixel's last drafting step).

The paper merges with a text LLM that keeps each phrase's tag (`tennis court-1`) so the phrase stays linked to
its mask; its prompt is not published (prompts/merge.txt is ours). The merged text marks every phrase as
`<p> tag </p> [SEG]`. The deterministic assembly is what a merge falls back to, in the shape of GeoPixelD's
captions: a short summary, the instance sentences, the group sentences, a closing remark.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from prompts import Template

from annotations.ask import MARKUP, Ask, bounded_text, object_schema
from annotations.priors import phrase

MERGED = bounded_text(2000, MARKUP)


def merge_ask(holistic: str, tagged: list[tuple[str, str]], t: Template) -> Ask:
    """The merge request: text only, the tier texts as `<p> tag </p>: sentence` lines, a reply `{"description"}`."""
    lines = "\n".join(f"<p> {tag} </p>: {sentence}" for tag, sentence in tagged)
    return Ask("merge", "", t.render(holistic=holistic, tagged_sentences=lines), object_schema({"description": MERGED}),
               None, 160 + 64 * len(tagged))


def _join(parts: Iterable[str]) -> str:
    return " ".join(p.strip() for p in parts if p and p.strip())


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_SEG = re.compile(r"\s*\[SEG\]")


def sentences(text: str) -> list[str]:
    """A plain text cut into sentences (at `.`, `!` or `?` followed by a capital)."""
    return [t for t in _SENTENCE_END.split(text.strip()) if t]


def summary_and_closing(holistic: str) -> tuple[str, str]:
    """A holistic text as a caption's opening summary (all but its last sentence) and closing remark (its last),
    the shape of GeoPixelD's captions; a text of one sentence is all summary."""
    parts = sentences(holistic)
    if len(parts) < 2:
        return " ".join(parts), ""
    return " ".join(parts[:-1]), parts[-1]


def grounded(tag: str, sentence: str) -> str:
    """An LMM tier sentence with its tag grounded: the first mention of the tag's words (`basketball court` for
    `basketball court-1`) becomes `<p> tag </p> [SEG]`; a sentence that never says them is led by the phrase.

    Tier sentences admit no angle brackets; a stray `[SEG]` in one is removed, so the result grounds once."""
    text = _SEG.sub("", sentence).strip()
    words = tag.rsplit("-", 1)[0]
    m = re.search(rf"\b{re.escape(words)}\b", text, re.I)
    if m is None:
        return f"{phrase(tag)} : {text}"
    return f"{text[:m.start()]}{phrase(tag)}{text[m.end():]}"


def assembled(holistic: str, tagged: list[tuple[str, str]]) -> str:
    """The LMM merge's fallback, when it loses, invents or repeats a tag: the shape of a merged caption.

    Summary (the holistic text but its last sentence), each (tag, sentence) with its tag grounded in place
    (`grounded`; `tagged` is in instance-then-group order, so instance sentences come first), then the holistic
    text's last sentence as the closing remark. Every tag appears exactly once, so the result always grounds."""
    summary, closing = summary_and_closing(_SEG.sub("", holistic))
    return _join([summary, *(grounded(tag, sentence) for tag, sentence in tagged), closing])


def assemble(summary: str, instance_texts: list[str], group_texts: list[str], closing: str = "") -> str:
    """The template drafter's caption: summary, instance sentences, group sentences, closing remark; its
    sentences already carry their `<p> tag </p> [SEG]`, so they are joined (empty parts left out)."""
    return _join([summary, *instance_texts, *group_texts, closing])
