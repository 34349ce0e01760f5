"""The merge: holistic, instance and group texts into one grounded description (GeoPixel's last drafting step).

The paper merges with a text LLM that keeps each phrase's tag (`tennis court-1`) so the phrase stays linked to
its mask; its prompt is not published (prompts/merge.txt is ours). The merged text marks every phrase as
`<p> tag </p> [SEG]`. The deterministic assembly is what a merge falls back to: the holistic text, then the
instance sentences, then the group sentences, joined by single spaces, empty parts left out.
"""

from __future__ import annotations

from collections.abc import Iterable

from prompts import Template

from annotations.ask import MARKUP, Ask, bounded_text, object_schema

MERGED = bounded_text(2000, MARKUP)


def merge_ask(holistic: str, tagged: list[tuple[str, str]], t: Template) -> Ask:
    """The merge request: text only, the tier texts as `<p> tag </p>: sentence` lines, a reply `{"description"}`."""
    lines = "\n".join(f"<p> {tag} </p>: {sentence}" for tag, sentence in tagged)
    return Ask("merge", "", t.render(holistic=holistic, tagged_sentences=lines), object_schema({"description": MERGED}),
               None, 160 + 64 * len(tagged))


def _join(parts: Iterable[str]) -> str:
    return " ".join(p for p in parts if p)


def assembled(holistic: str, tagged: list[tuple[str, str]]) -> str:
    """The LMM merge's fallback, when it loses, invents or repeats a tag: each (tag, sentence) led by its tag.

    LMM tier sentences never name their tag (their schema admits no angle brackets), so the assembly puts
    `<p> tag </p> [SEG] :` before each; `tagged` is in instance-then-group order. The result always grounds.
    """
    return _join([holistic.strip()] + [f"<p> {tag} </p> [SEG] : {sentence.strip()}" for tag, sentence in tagged])


def assemble(holistic_text: str, instance_texts: list[str], group_texts: list[str]) -> str:
    """The template drafter's merge: its sentences already carry their `<p> tag </p> [SEG]`, so they are joined."""
    return _join(t.strip() for t in [holistic_text, *instance_texts, *group_texts])
