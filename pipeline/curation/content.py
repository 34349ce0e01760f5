"""What a curator sees and changes in one record, as pure functions: content hashes, the description cut into
sentences (the unit a phrase's edit replaces), edit checks, and applying resolved decisions to a GCG record.

A phrase's edit replaces the sentence that holds it; the `<p> tag </p> [SEG]` markup of every phrase of that
sentence stays. A rejected phrase loses its sentence when every phrase of the sentence is rejected, else only
its markup (its words stay, ungrounded). The result is grounded again, so spans are recomputed and a phrase
that no longer resolves to its mask is an error, never a silent drop.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime

from pipeline.contracts.gcg_schema import GEOREF_COLUMNS, Dropped, GCGRecord
from pipeline.contracts.grounding import PHRASE_RE, Target, ground

REJECTED = "rejected by curator"
REMOVED = "rejected by curator (removed by another curator's edit)"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_MARKUP = re.compile(r"</?p>|\[SEG\]")
_SPACE = re.compile(r"\s+")


def content_hash(record: GCGRecord) -> str:
    """sha256 of everything a curator decides on: the whole drafted row except its curation status.

    The hash is stored in exports and the ledger, so it keeps the row layout it was defined on (GCG schema 2:
    phrases' `kind`, no georeference, which is the plan's and no curator's): decisions made on records of
    schema 2 still hold on the same content drafted again as schema 3 or 4. The verification's `checks` are left
    out too: they follow from the texts and the check settings, so verifying again keeps every decision."""
    body = record.to_row()
    for k in ("curation_status", "checks", *GEOREF_COLUMNS):
        del body[k]
    body["schema_version"] = 2
    body["phrases"] = [{("kind" if k == "tier" else k): v for k, v in p.items()} for p in body["phrases"]]
    blob = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class Segment:
    """One sentence of a description: `description[start:end]`, the whitespace after it, the tags in it."""

    start: int
    end: int
    sep: str
    tags: tuple[str, ...]


def segments(description: str) -> list[Segment]:
    """Cut a description into sentences (never inside phrase markup); joining text + sep gives it back."""
    spans = [(m.start(), m.end(), m["text"]) for m in PHRASE_RE.finditer(description)]
    out, pos = [], 0

    def cut(end: int, sep: str) -> Segment:
        return Segment(pos, end, sep, tuple(t for s, _, t in spans if pos <= s < end))

    for m in _SENTENCE_END.finditer(description):
        if any(s < m.start() < e for s, e, _ in spans):
            continue
        out.append(cut(m.start(), m.group()))  # the look-behind makes every sentence non-empty
        pos = m.end()
    if pos < len(description):
        out.append(cut(len(description), ""))
    return out


def segment_of(description: str, tag: str) -> Segment | None:
    return next((s for s in segments(description) if tag in s.tags), None)


def normalize_text(text: str) -> str:
    """An edit as it is stored: one line, single spaces."""
    return _SPACE.sub(" ", text).strip()


def check_edit(text: str, segment_tags: tuple[str, ...], keep: set[str], tag: str) -> str | None:
    """Why an edited sentence is not acceptable (None when it is).

    `keep`: tags of the sentence that must still be grounded in it (those not rejected); `tag`: the phrase edited.
    """
    found = [m["text"] for m in PHRASE_RE.finditer(text)]
    leftover = _MARKUP.findall(PHRASE_RE.sub("", text)) + [x for t in found for x in _MARKUP.findall(t)]
    if leftover:
        return f"unbalanced grounding markup {' '.join(leftover[:3])!r}; every phrase is `<p> tag </p> [SEG]`"
    if not text.strip():
        return "the edited text is empty (reject the phrase instead)"
    for t in found:
        if t not in segment_tags:
            return f"phrase {t!r} is not one of this sentence's phrases ({', '.join(segment_tags)})"
    dup = [t for t, n in Counter(found).items() if n > 1]
    if dup:
        return f"phrase {dup[0]!r} appears more than once"
    missing = [t for t in segment_tags if (t in keep or t == tag) and t not in found]
    if missing:
        return f"the tag must stay: `<p> {missing[0]} </p> [SEG]` is missing from the edited text"
    return None


@dataclass(frozen=True)
class Decided:
    """One resolved decision on a patch or a phrase."""

    decision: str  # patch: accept | reject | flag; phrase: accept | reject | edit
    at: datetime
    curator: str
    text: str | None = None  # the edited sentence, or the patch's note


@dataclass
class Resolution:
    """Every decision that holds for one patch after the policy settled disagreements."""

    patch: Decided | None = None
    phrases: dict[str, Decided] = field(default_factory=dict)
    needs_look: bool = False  # curators disagree and the policy wants another look: the patch stays pending


STATUS = {"accept": "accepted", "reject": "rejected", "flag": "flagged"}


class CurationError(ValueError):
    """Decisions that cannot be applied to a record (names the patch and the phrase)."""


def _unground(text: str, tags: set[str]) -> str:
    """`<p> tennis court-1 </p> [SEG]` -> `tennis court` for the given tags (the words stay, the mask link goes)."""
    if not tags:
        return text
    return PHRASE_RE.sub(lambda m: re.sub(r"-\d+$", "", m["text"]) if m["text"] in tags else m[0], text)


def apply(record: GCGRecord, res: Resolution) -> tuple[GCGRecord, Counter]:
    """The curated record (a new one) and its phrase counts (accepted, edited, rejected)."""
    counts: Counter = Counter()
    status = "pending" if res.needs_look or res.patch is None else STATUS[res.patch.decision]
    desc = record.description
    if record.status != "ok" or desc is None:
        return replace(record, curation_status=status), counts
    phrases = {p.tag: p for p in record.phrases}
    decided = {t: d for t, d in res.phrases.items() if t in phrases}
    rejected = {t for t, d in decided.items() if d.decision == "reject"}
    parts = []
    for seg in segments(desc):
        edits = [decided[t] for t in seg.tags if t in decided and decided[t].decision == "edit"]
        text = max(edits, key=lambda d: d.at).text if edits else desc[seg.start : seg.end]
        if seg.tags and set(seg.tags) <= rejected:
            continue
        parts.append(_unground(text, rejected & set(seg.tags)) + seg.sep)
    new = "".join(parts).strip()
    targets = {t: Target(t, p.tier, p.category, tuple(p.object_ids), p.rle) for t, p in phrases.items()}
    g = ground(new, targets)
    if not g.ok:
        raise CurationError(f"patch {record.patch_id!r}: the curated description does not ground: {'; '.join(g.errors)}")
    removed = [t for t in g.missing if t not in rejected]  # an edit by one curator dropped a phrase another kept
    out = replace(record, curation_status=status, description=new, phrases=g.phrases, dropped=list(record.dropped) + [
        Dropped(p.tag, REJECTED if p.tag in rejected else REMOVED)
        for p in record.phrases if p.tag in rejected or p.tag in removed])
    if status == "rejected":
        return out, counts
    for t in phrases:
        d = decided.get(t)
        if t in rejected or t in removed:
            counts["phrases_rejected"] += 1
        elif d is not None and d.decision == "edit":
            counts["phrases_edited"] += 1
        elif d is not None or status == "accepted":  # accepting a patch accepts its undecided phrases
            counts["phrases_accepted"] += 1
    return out, counts
