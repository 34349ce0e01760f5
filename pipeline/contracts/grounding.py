"""Grounding: every phrase of a description is `<p> tag </p> [SEG]` and must resolve to a planned mask.

LMM output is untrusted text: this module never evaluates it, it only parses the markup with a regular
expression and checks it against the plan's targets (instance tags and group tags).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pipeline.contracts.gcg_schema import Phrase, Tier
from pipeline.contracts.records import PatchPlan

PHRASE_RE = re.compile(r"<p>\s*(?P<text>.*?)\s*</p>\s*\[SEG\]", re.S)
_MARKUP = re.compile(r"</?p>|\[SEG\]")


@dataclass(frozen=True)
class Target:
    """What a tag stands for: one instance, or the union of a group."""

    tag: str
    tier: Tier
    category: str
    object_ids: tuple[int, ...]
    rle: dict


@dataclass
class Grounding:
    """The phrases of a description, resolved to their targets (the record's `Phrase`s)."""

    phrases: list[Phrase] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # why the description cannot be kept as it is
    missing: list[str] = field(default_factory=list)  # planned tags the description does not contain

    @property
    def ok(self) -> bool:
        return not self.errors


def targets_of(plan: PatchPlan) -> dict[str, Target]:
    out = {o.tag: Target(o.tag, "instance", o.category, (o.object_id,), o.rle) for o in plan.instances}
    for g in plan.groups:
        out[g.tag] = Target(g.tag, "group", g.category, tuple(g.member_ids), g.rle)
    return out


def ground(description: str, targets: dict[str, Target]) -> Grounding:
    """Resolve every phrase; errors for unknown, duplicated or malformed tags; missing tags listed apart."""
    res = Grounding()
    seen: set[str] = set()
    for m in PHRASE_RE.finditer(description):
        tag = m["text"]
        if tag not in targets:
            res.errors.append(f"phrase {tag!r} is not a planned tag")
            continue
        if tag in seen:
            res.errors.append(f"tag {tag!r} appears more than once")
            continue
        seen.add(tag)
        t = targets[tag]
        res.phrases.append(Phrase(tag, m.start("text"), m.end("text"), t.tier, t.category, list(t.object_ids), t.rle))
    leftover = _MARKUP.findall(PHRASE_RE.sub("", description))
    if leftover:
        res.errors.append(f"unbalanced grounding markup: {' '.join(leftover[:5])}")
    res.missing = [t for t in targets if t not in seen]
    return res


def strip_tags(description: str) -> str:
    """The caption without grounding markup (for caption metrics): `<p> tennis court-1 </p> [SEG]` -> `tennis court`."""
    text = PHRASE_RE.sub(lambda m: re.sub(r"-\d+$", "", m["text"]), description)
    return re.sub(r"\s+([,.;:])", r"\1", re.sub(r"\s+", " ", text)).strip()
