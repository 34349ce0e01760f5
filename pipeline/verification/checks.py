"""The text checks: every drafted sentence compared with the plan's facts before it is kept.

Each check is a small pure function with a name (`category`, `position`, `count`, `leakage`, `absent`, `form`,
`merge`) that returns `Failure`s; `verify_texts` runs the enabled ones on the holistic text, each instance text by
tag, each group text by tag and the merged description. The rules, decided because the paper published none:

- **category**: an instance or group text's *subject* (its first category mention not governed by a preposition,
  so "parked next to two trucks" and "moored at the harbor" are relations, not subjects) must be a name of the
  planned category (`synonyms.py`; an ambiguous name such as "court" or "vehicle" agrees with each category it may
  mean). Weak names ("a green field") never contradict. A subject of another category is tolerated only when the
  planned category is named in a relation to it ("boats are moored at the harbor": the object described through
  what it holds). A text naming no category passes unless `require_category_mention`.
- **position**: every absolute position phrase (not "to the left of the building", not "facing the top right", not
  "from the top left to the bottom right") lies within the tolerance of the cells the object occupies; phrases in
  a clause about another category, or modifying a noun a relation introduced ("next to a lot on the right side"),
  are not about the subject. Holistic texts: a phrase must fit some object of a category its clause names.
- **count**: a group text's numbers and quantity words attached to the category admit the group's count
  (`settings.DEFAULT_VAGUE` ranges; "about N" within `approx_tolerance`), a group of one is never named in the
  plural, a group of several never only by one singular noun; an instance text names its object in the singular.
  Holistic texts: a number may not exceed the patch's objects of that category, nor fall short of it unless its
  sentence restricts it (a position in its clause, "other", "more", "some of"); the parts of one object (a
  harbour's "piers", `uncounted_names`) are not counted.
- **leakage**: no mark numbers ("marked 3", "#3", "object 3", "(3)"), tags (`tennis court-1`), grounding markup,
  other angle-bracket tags, markdown or JSON in tier texts (the template drafter's own `<p> tag </p> [SEG]` is
  allowed in that tag's text); in the merge nothing outside the grounded phrases.
- **absent**: holistic and merged texts name no category the patch has none of; negated mentions ("no ships",
  "without any vehicles") and weak names are fine.
- **form**: empty, refusing, truncated, repeated or looping replies and lengths out of `lengths`.
- **merge**: the merged description keeps every tier text's tag, and in each tag's sentence the exact count and a
  position agreeing with its tier text; it says nothing of a tag's object (category, position, count) and, in its
  sentences without tags, no number or position of a category that the plan contradicts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache

from annotations import merge
from annotations.group import GRID_SHAPES
from annotations.priors import POSITION_WORDS
from pipeline.contracts.gcg_schema import GCGRecord
from pipeline.contracts.grounding import PHRASE_RE
from pipeline.contracts.records import Group, PatchPlan, PlannedObject
from pipeline.verification.settings import DEFAULT_SETTINGS, VerifySettings
from pipeline.verification.synonyms import Lexicon, plural
from pipeline.verification.text_facts import (ALL_CELLS, ANCHOR, NUMBER_WORDS, SINGULAR_DETS, Cell, Mention,
                                               PositionPhrase, QuantityWords, TextFacts, normalize, parse_text,
                                               quantity_words, subject_of)

TierName = str  # holistic | instance | group | merge


@dataclass(frozen=True)
class Failure:
    """One thing a text says that the plan contradicts (or a reply that is no description)."""

    tier: TierName  # holistic | instance | group | merge
    tag: str  # the instance or group tag; "" for holistic and merge
    check: str  # the check's name
    detail: str  # what was found and what the plan says


@dataclass(frozen=True)
class Subject:
    """What an instance or group text must say: the plan's facts of one tag."""

    tier: TierName
    tag: str
    category: str
    count: int  # 1 for an instance
    cells: frozenset[Cell]  # where it is: its position word's cell, its group cell, the cells its box reaches
    tolerance: int  # Chebyshev distance in 3x3 cells a phrase may lie from `cells`
    where: str  # the plan's words for it, for failure details


class Scene(Mapping):
    """What holistic and merged texts are checked against: the patch's objects by category. As a mapping,
    category -> where each of its objects is (3x3 cells), worked out for a category when a check first asks."""

    def __init__(self, counts: Mapping[str, int], objects: Mapping[str, list[PlannedObject]], present: frozenset[str],
                 tolerance: int, cells_of):
        self.counts = counts  # category -> objects in the patch (every tier, dropped included)
        self.present = present  # categories the patch holds, and those they imply
        self.tolerance = tolerance
        self._objects, self._cells_of, self._cells = objects, cells_of, {}

    def __getitem__(self, category: str) -> tuple[frozenset[Cell], ...]:
        if category not in self._cells:
            self._cells[category] = tuple(self._cells_of(o) for o in self._objects[category])
        return self._cells[category]

    def __iter__(self):
        return iter(self._objects)

    def __len__(self) -> int:
        return len(self._objects)


# ------------------------------------------------------------------------------------------- plan facts

_WORD_CELL = {w: (r, c) for r, row in enumerate(POSITION_WORDS) for c, w in enumerate(row)}


@lru_cache(maxsize=8192)
def _chebyshev(a: frozenset[Cell], b: frozenset[Cell]) -> int:
    """The least 3x3-grid Chebyshev distance between two sets of cells (few sets occur: remembered)."""
    return min(max(abs(r1 - r2), abs(c1 - c2)) for r1, c1 in a for r2, c2 in b) if a and b else 0


def word_cells(word: str) -> frozenset[Cell]:
    """The 3x3 cell of a position word ("top left"), nothing for a word outside the grid."""
    return frozenset({_WORD_CELL[word]}) if word in _WORD_CELL else frozenset()


def grid_cells(grid: str, cell: str) -> frozenset[Cell]:
    """The 3x3 cells a group's cell covers: "left" of a 1x2 grid is the left half, so columns 0 and 1."""
    if cell == "whole image" or grid not in GRID_SHAPES:
        return ALL_CELLS
    rows, cols = GRID_SHAPES[grid]
    r = 0 if "top" in cell else rows - 1 if "bottom" in cell else rows // 2
    c = 0 if "left" in cell else cols - 1 if "right" in cell else cols // 2
    y0, y1, x0, x1 = r / rows, (r + 1) / rows, c / cols, (c + 1) / cols
    return frozenset((i, j) for i in range(3) for j in range(3)
                     if i / 3 < y1 and (i + 1) / 3 > y0 and j / 3 < x1 and (j + 1) / 3 > x0)


def _span(lo: float, hi: float) -> range:
    """The thirds of [0, 1] that the open interval (lo, hi) reaches."""
    return range(max(0, math.floor(3 * lo - 1) + 1), min(2, math.ceil(3 * hi) - 1) + 1)


def box_cells(bbox: tuple[float, float, float, float], width: int, height: int, margin: float) -> frozenset[Cell]:
    """The 3x3 cells a box (x, y, w, h in patch px) reaches once grown by `margin` of the patch side."""
    x, y, w, h = bbox
    cols = _span((x - margin * width) / width, (x + w + margin * width) / width)
    rows = _span((y - margin * height) / height, (y + h + margin * height) / height)
    return frozenset((i, j) for i in rows for j in cols)


def _object_cells(o: PlannedObject, plan: PatchPlan, s: VerifySettings) -> frozenset[Cell]:
    cells = word_cells(o.position)
    if s.position_extent or not cells:
        cells |= box_cells(o.bbox, plan.width, plan.height, s.extent_margin)
    return cells


def instance_subject(o: PlannedObject, plan: PatchPlan, s: VerifySettings = DEFAULT_SETTINGS) -> Subject:
    return Subject("instance", o.tag or "", o.category, 1, _object_cells(o, plan, s), s.position_tolerance,
                   f"at the {o.position}")


def group_subject(g: Group, plan: PatchPlan, s: VerifySettings = DEFAULT_SETTINGS) -> Subject:
    # a group of the whole image (one per category) is where its members are: the box of their union
    cells = (box_cells(g.bbox, plan.width, plan.height, s.extent_margin) if g.cell == "whole image"
             else grid_cells(g.grid, g.cell)) | word_cells(g.position)
    if s.position_extent:
        cells |= box_cells(g.bbox, plan.width, plan.height, s.extent_margin)
    where = "across the whole image" if g.cell == "whole image" else \
        f"in the {g.cell} cell of a {g.grid} grid, centred at the {g.position}"
    return Subject("group", g.tag, g.category, g.count, cells, s.group_position_tolerance, where)


def subjects_of(plan: PatchPlan, s: VerifySettings = DEFAULT_SETTINGS) -> dict[str, Subject]:
    """Every tag of the plan and the facts its text must agree with."""
    out = {o.tag: instance_subject(o, plan, s) for o in plan.instances if o.tag}
    out.update({g.tag: group_subject(g, plan, s) for g in plan.groups})
    return out


def scene_of(plan: PatchPlan, s: VerifySettings = DEFAULT_SETTINGS) -> Scene:
    objects: dict[str, list[PlannedObject]] = {}
    for o in plan.objects:
        objects.setdefault(o.category, []).append(o)
    present = set(objects)
    for cat in list(present):
        present |= set(s.implied.get(cat, ()))
    return Scene({k: len(v) for k, v in objects.items()}, objects, frozenset(present), s.position_tolerance,
                 lambda o: _object_cells(o, plan, s))


@dataclass(frozen=True)
class _Context:
    """What the settings compile to, built once per settings object."""

    lexicon: Lexicon
    vague: QuantityWords
    refusals: tuple[str, ...]
    uncounted: frozenset[str]


_CONTEXTS: dict[int, tuple[VerifySettings, _Context]] = {}


def _context(s: VerifySettings) -> _Context:
    hit = _CONTEXTS.get(id(s))
    if hit is not None and hit[0] is s:
        return hit[1]
    ctx = _Context(s.lexicon(), quantity_words(tuple(sorted((k, tuple(v)) for k, v in s.vague().items())),
                                               s.approx_tolerance), tuple(p.lower() for p in s.refusals),
                   frozenset(s.uncounted_names) | frozenset(plural(n) for n in s.uncounted_names))
    if len(_CONTEXTS) > 32:
        _CONTEXTS.clear()
    _CONTEXTS[id(s)] = (s, ctx)  # the settings object is kept alive with it, so its id is not reused meanwhile
    return ctx


def lexicon_for(plan: PatchPlan, s: VerifySettings) -> Lexicon:
    """The settings' lexicon, with the plan's own category words added when a custom vocabulary brings new ones."""
    known = _context(s).lexicon
    missing = {o.category for o in plan.objects} - known.categories
    if not missing:
        return known
    return s.model_copy(update={"synonyms": {**s.synonyms, **{m: [] for m in sorted(missing)}}}).lexicon()


def _parser(plan: PatchPlan, s: VerifySettings):
    """text -> TextFacts for one plan: its lexicon and tag categories worked out once."""
    cats = {o.tag: o.category for o in plan.objects if o.tier == "instance" and o.tag}
    cats.update({g.tag: g.category for g in plan.groups})
    lexicon, vague, tol = lexicon_for(plan, s), _context(s).vague, s.approx_tolerance
    return lambda text: parse_text(text, lexicon, vague, tol, cats)


def parse(text: str, plan: PatchPlan, s: VerifySettings = DEFAULT_SETTINGS) -> TextFacts:
    """A text's facts, its grounded phrases read as the plan's tags."""
    return _parser(plan, s)(text)


# ----------------------------------------------------------------------------------------------- helpers

def _fits(m: Mention, subject: Subject) -> bool:
    """Whether a mention may name the subject: its own anchor, or a name of its category (not another tag)."""
    if m.tag is not None:
        return m.tag == subject.tag
    return subject.category in m.categories


def _names(m: Mention) -> str:
    return m.surface if m.tag is None else f"<p> {m.tag} </p>"


def _cats(m: Mention) -> str:
    return " or ".join(sorted(m.categories)) or "no category"


def _cell_words(cells: frozenset[Cell]) -> str:
    return ", ".join(POSITION_WORDS[r][c] for r, c in sorted(cells))


def _between(facts: TextFacts, items, a: int, b: int):
    return [x for x in items if a <= x.start < b]


# ---------------------------------------------------------------------------------------- the judgements

def _category_problems(mentions: list[Mention], subject: Subject, require: bool) -> list[str]:
    first = subject_of(mentions, subject.category)
    if first is None:
        if require and not any(_fits(m, subject) for m in mentions if not m.negated):
            return [f"names no {subject.category}"]
        return []
    if _fits(first, subject):
        return []
    if any(_fits(m, subject) for m in mentions if m.relational and not m.negated):
        return []  # "boats are moored at the harbor": the object is described through what it holds
    return [f"its subject is {_names(first)!r} ({_cats(first)}), the plan's object is a {subject.category}"]


def _about_subject(p: PositionPhrase, facts: TextFacts, mentions: list[Mention], subject: Subject) -> bool:
    """Whether a position phrase speaks of the subject: not of a noun a relation introduced, not in a clause that
    names only other things."""
    if p.whole:
        return False
    if p.attached is not None:
        a, b = p.attached
        if not any(_fits(m, subject) for m in mentions if a <= m.start < b):
            return False
    clause = facts.clause_of(p.start)
    named = [m for m in mentions if not m.negated and not m.relational and facts.clause_of(m.start) == clause]
    return not named or any(_fits(m, subject) for m in named)


def _position_problems(facts: TextFacts, mentions: list[Mention], positions: list[PositionPhrase],
                       subject: Subject) -> list[str]:
    out = []
    for p in positions:
        if not _about_subject(p, facts, mentions, subject):
            continue
        if _chebyshev(p.cells, subject.cells) > subject.tolerance:
            out.append(f"says {p.text!r} ({_cell_words(p.cells)}), the plan puts the {subject.category} "
                       f"{subject.where}")
    return out


def _count_problems(mentions: list[Mention], subject: Subject) -> list[str]:
    own = [m for m in mentions if _fits(m, subject) and not m.negated and not m.qualified]
    if subject.tier == "instance":
        main = next((m for m in own if not m.relational), None)
        if main is None:
            return []
        q = main.quantity
        if q is not None and not q.admits(1):
            return [f"says {q.text!r} {_names(main)}, the instance is one {subject.category}"]
        if q is None and main.plural:
            return [f"names it in the plural ({_names(main)!r}), the instance is one {subject.category}"]
        return []
    c = subject.count
    out, counted = [], False
    for m in own:
        if m.quantity is None:
            continue
        counted = True
        if not m.quantity.admits(c):
            out.append(f"says {m.quantity.text!r} {_names(m)}, the group has {c}")
    if out or counted:
        return out
    plural = [m for m in own if m.plural]
    singular = [m for m in own if m.plural is False and not m.weak and (m.determiner in SINGULAR_DETS or m.determiner is None)]
    if c == 1 and any(not m.relational for m in plural):
        m = next(m for m in plural if not m.relational)
        return [f"names it in the plural ({_names(m)!r}), the group is a single {subject.category}"]
    if c >= 2 and len(singular) == 1 and not plural and not singular[0].relational:
        return [f"names it in the singular ({_names(singular[0])!r}), the group has {c}"]
    return []


_RESTRICTORS = re.compile(r"\b(?:other|others|another|more|additional|also|remaining|further|each|some\s+of|"
                          r"of\s+them|of\s+which|including|among|rest|several\s+of|most\s+of|two\s+of|one\s+of)\b")


def _scene_problems(facts: TextFacts, scene: Scene, a: int, b: int,
                    uncounted: frozenset[str] = frozenset()) -> tuple[list[str], list[str]]:
    """(position problems, count problems) of the tagless text in [a, b): what it says of categories."""
    mentions = [m for m in _between(facts, facts.mentions, a, b) if m.tag is None and not m.negated and not m.weak]
    positions = _between(facts, facts.positions, a, b)
    pos_out, count_out = [], []
    by_clause: dict[int, list[Mention]] = {}
    for m in mentions:
        by_clause.setdefault(facts.clause_of(m.start), []).append(m)
    for p in positions:
        if p.whole:
            continue
        if p.attached is not None:
            x, y = p.attached
            candidates = [m for m in mentions if x <= m.start < y]
        else:
            k = facts.clause_of(p.start)
            candidates = by_clause.get(k) or []
            sentence = facts.sentence_of(p.start)
            for near in (k + 1, k - 1):  # "At the top left, there is a plane": the position's clause names nothing
                if candidates:
                    break
                candidates = [m for m in by_clause.get(near, []) if facts.sentence_of(m.start) == sentence]
        candidates = [m for m in candidates if any(c in scene for c in m.categories)]
        if not candidates:
            continue
        if any(_chebyshev(p.cells, cells) <= scene.tolerance
               for m in candidates for cat in m.categories if cat in scene for cells in scene[cat]):
            continue
        names = " / ".join(dict.fromkeys(_names(m) for m in candidates))
        where = "; ".join(f"{cat}: {_cell_words(frozenset().union(*scene[cat]))}"
                          for cat in sorted({c for m in candidates for c in m.categories if c in scene}))
        pos_out.append(f"says {names} {p.text!r}, the patch has none there ({where})")
    for m in mentions:
        q = m.quantity
        if q is None or m.qualified or m.surface in uncounted:
            continue
        totals = [scene.counts.get(c, 0) for c in m.categories]
        union = sum(totals)
        if union == 0:
            continue  # the absent check names it
        if q.admits(union) or any(q.admits(t) for t in totals if t):
            continue
        if q.low > union:
            count_out.append(f"says {q.text!r} {m.surface}, the patch has {union}")
            continue
        k = facts.clause_of(m.start)
        sentence = facts.sentence_of(m.start)
        span = facts.sentences[sentence]
        restricted = any(facts.clause_of(p.start) == k for p in positions if not p.whole) or \
            _RESTRICTORS.search(facts.text, span[0], span[1]) is not None
        if not restricted:
            count_out.append(f"says {q.text!r} {m.surface}, the patch has {union}")
    return pos_out, count_out


# ------------------------------------------------------------------------------------------ the checks

def check_category(facts: TextFacts, subject: Subject, s: VerifySettings = DEFAULT_SETTINGS) -> list[Failure]:
    """An instance or group text's subject is a name of its planned category."""
    return [Failure(subject.tier, subject.tag, "category", d)
            for d in _category_problems(list(facts.mentions), subject, s.require_category_mention)]


def check_position(facts: TextFacts, subject: Subject, s: VerifySettings = DEFAULT_SETTINGS) -> list[Failure]:
    """Every absolute position phrase about the subject lies within tolerance of where the plan puts it."""
    return [Failure(subject.tier, subject.tag, "position", d)
            for d in _position_problems(facts, list(facts.mentions), list(facts.positions), subject)]


def check_count(facts: TextFacts, subject: Subject, s: VerifySettings = DEFAULT_SETTINGS) -> list[Failure]:
    """Numbers, quantity words and grammatical number agree with the group's count (an instance: one)."""
    return [Failure(subject.tier, subject.tag, "count", d) for d in _count_problems(list(facts.mentions), subject)]


def check_scene(tier: TierName, facts: TextFacts, scene: Scene, s: VerifySettings = DEFAULT_SETTINGS) -> list[Failure]:
    """A holistic text's positions and numbers of categories fit the patch's objects."""
    pos, counts = _scene_problems(facts, scene, 0, len(facts.text), _context(s).uncounted)
    return [Failure(tier, "", "position", d) for d in pos] + [Failure(tier, "", "count", d) for d in counts]


def check_absent(tier: TierName, facts: TextFacts, scene: Scene, s: VerifySettings = DEFAULT_SETTINGS) -> list[Failure]:
    """A holistic or merged text names no category the patch has none of (negations and weak names aside)."""
    out, seen = [], set()
    for m in facts.mentions:
        if m.tag is not None or m.negated or m.weak or m.categories & scene.present or m.surface in seen:
            continue
        seen.add(m.surface)
        out.append(Failure(tier, "", "absent", f"names {m.surface!r}, the patch has no {_cats(m)}"))
    return out


_MARKDOWN = re.compile(r"\*\*|__|`|^\s*#{1,6}\s|^\s*[-*+]\s+\S|^\s*\d+[.)]\s+\S|\]\(|\|\s*-{3}", re.M)
_JSON = re.compile(r"[{}]|\"\s*[a-z_]+\s*\"\s*:")
_ANGLE = re.compile(r"</?\s*[a-z][^<>]{0,40}>|\[/?\s*seg\s*\]|</?p>|\[/?[a-z_]+\]|<\|[^|]*\|>")
_NUMWORD = "|".join(sorted(NUMBER_WORDS, key=len, reverse=True))
_DIGIT_AFTER = re.compile(r"\s*[-#]?\s*\d")
_DASH_NUMBER = re.compile(r"\s*-\s*\d+\b")
_NUMBER_AFTER = re.compile(r"\s+#?\d+\b")
_RANGE_AFTER = re.compile(r"\s*(?:and|or|to|-)\s*\d")
_DIGITS = re.compile(r"\d+")
_BRACKETS = {"(": ")", "[": "]"}
_MARK_VERBS = r"(?:marked|labell?ed|tagged|numbered|annotated|indicated|identified|denoted|designated)"
_MARK_NOUNS = r"(?:number|numeral|digit|label|mark|marker|tag|id)"
_MARK_BEFORE = re.compile(  # what precedes a mark's digits, up to them
    rf"(?:#\s*|\b{_MARK_VERBS}\s+(?:with\s+|as\s+|by\s+)?(?:the\s+|a\s+)?(?:{_MARK_NOUNS}\s*)?#?\s*|"
    r"\b(?:number|no\.|num\.?|nr\.?|mark|marker|label|tag|object|item|id|box|square|instance|target|entity)\s*#?\s*)$")
_MARK_WORD = re.compile(rf"\b(?:{_MARK_VERBS}|number|mark|label)\b")
_MARK_IN_WORDS = re.compile(
    rf"\b{_MARK_VERBS}\s+(?:with\s+|as\s+|by\s+)?(?:the\s+|a\s+)?(?:{_MARK_NOUNS}\s*)?(?:{_NUMWORD})\b|"
    rf"\bthe\s+(?:number|mark|label)\s+(?:{_NUMWORD})\b")
_MARKUP_CHARS = re.compile(r"[<>\[\]{}*_`#|]|^\s*[-+\d]|\n")
_UNITS = re.compile(r"\s*(?:m|meters?|metres?|km|kilometers?|kilometres?|feet|foot|ft|%|percent|x|times|lanes?|"
                    r"stor(?:e)?y|stories|storeys|degrees?|°)\b")


def check_leakage(tier: TierName, tag: str, text: str, plan: PatchPlan, s: VerifySettings = DEFAULT_SETTINGS,
                  facts: TextFacts | None = None) -> list[Failure]:
    """No mark numbers, tags, markup, markdown or JSON in a text (grounded phrases aside where they belong)."""
    out: list[Failure] = []
    def fail(detail: str) -> None:
        out.append(Failure(tier, tag, "leakage", detail))

    phrases = list(PHRASE_RE.finditer(text))
    if tier == "merge":
        pass  # grounded phrases are the merge's format; the validate stage resolves them
    elif tier == "holistic" and phrases:
        fail(f"holds grounding markup {phrases[0].group(0)!r}")
    elif phrases:
        others = [m["text"].strip() for m in phrases if m["text"].strip() != tag]
        if others:
            fail(f"holds the grounded phrase of another tag ({others[0]!r})")
        elif len(phrases) > 1:
            fail(f"holds its grounded phrase {len(phrases)} times")
    if facts is not None and tier != "merge":
        rest = facts.text.replace(ANCHOR, " ") if phrases else facts.text
    else:
        rest = normalize(PHRASE_RE.sub(" ", text) if phrases else text)
    if _MARKUP_CHARS.search(rest):  # the patterns below need one of these characters
        angle = _ANGLE.search(rest)
        if angle:
            fail(f"holds markup {angle.group(0)!r}")
        md = _MARKDOWN.search(rest)
        if md:
            fail(f"holds markdown {md.group(0).strip()!r}")
        js = _JSON.search(rest)
        if js:
            fail(f"holds JSON {js.group(0)!r}")
    # a tag is a category's name and "-k" ("tennis court-1", "small vehicles - 2"); a name and a bare number is a mark
    facts = facts if facts is not None else parse(text, plan, s)
    body = facts.text
    for m in facts.mentions:
        if m.tag is not None or not _DIGIT_AFTER.match(body, m.end):
            continue
        dash = _DASH_NUMBER.match(body, m.end)
        if dash:
            fail(f"names a tag {body[m.start:dash.end()]!r}")
            break
        num = _NUMBER_AFTER.match(body, m.end)
        if num and not _UNITS.match(body, num.end()) and not _RANGE_AFTER.match(body, num.end()):
            fail(f"names a mark number {body[m.start:num.end()]!r}")
            break
    hit = _mark_number(rest)
    if hit:
        fail(f"names a mark number {hit!r}")
    return out


def _mark_number(text: str) -> str | None:
    """A number tied to a marking word ("marked 3", "#3", "object 3", "(3)", "the number three"), looked for only
    before each digit run and, for numbers in words, only where a marking word occurs."""
    for d in _DIGITS.finditer(text):
        a, b = d.start(), d.end()
        before = _MARK_BEFORE.search(text, max(0, a - 48), a)
        if before:
            return text[before.start():b]
        if 0 < a and b < len(text) and _BRACKETS.get(text[a - 1]) == text[b] and \
                (a < 2 or not text[a - 2].isalnum()) and b - a <= 3:
            return text[a - 1:b + 1]
    if _MARK_WORD.search(text):
        hit = _MARK_IN_WORDS.search(text)
        if hit:
            return hit.group(0)
    return None


_FUNCTION_END = re.compile(r"\b(?:the|a|an|of|and|with|to|in|on|at|is|are|which|that|its|their|or|but|for|by|from|"
                           r"as|near|next|into|onto|while|was|were|has|have)\s*$")


def _refusal(plain: str, phrases: tuple[str, ...]) -> str | None:
    """The first refusal phrase found at a word's start (plain substring search: fast on normalized text)."""
    if not _refusal_hint(phrases).search(plain):
        return None
    for p in phrases:
        i = plain.find(p)
        while i >= 0:
            if i == 0 or not plain[i - 1].isalnum():
                return p
            i = plain.find(p, i + 1)
    return None


@lru_cache(maxsize=16)
def _refusal_hint(phrases: tuple[str, ...]) -> re.Pattern:
    """The first words of the refusal phrases: a text holding none of them refuses nothing."""
    firsts = sorted({re.escape(p.split()[0]) for p in phrases if p.split()}, key=len, reverse=True)
    return re.compile(r"(?<!\w)(?:" + "|".join(firsts or ["(?!)"]) + ")")


_WORD = re.compile(r"[a-z0-9_\ue000]+(?:'[a-z]+)?")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+")


def check_length(tier: TierName, tag: str, text: str, s: VerifySettings = DEFAULT_SETTINGS) -> list[Failure]:
    """The form check's length bounds alone (what an assembly of checked tier texts still needs)."""
    bounds = getattr(s.lengths, tier)
    n = len(text.strip())
    if n < bounds.min_chars or (bounds.max_chars is not None and n > bounds.max_chars):
        return [Failure(tier, tag, "form", f"is {n} characters long, outside [{bounds.min_chars}, "
                                           f"{bounds.max_chars or 'inf'}]")]
    return []


def check_form(tier: TierName, tag: str, text: str, s: VerifySettings = DEFAULT_SETTINGS,
               facts: TextFacts | None = None) -> list[Failure]:
    """An answer, not a refusal, a fragment or a loop; its length within the tier's bounds."""
    def fail(detail: str) -> list[Failure]:
        return [Failure(tier, tag, "form", detail)]

    if not text or not text.strip():
        return fail("is empty")
    out: list[Failure] = []
    if facts is not None and len(facts.anchors) <= 1:  # one tag at most: its anchor is as good as its name
        plain = facts.text.strip()
    else:
        plain = normalize(PHRASE_RE.sub(lambda m: " " + m["text"].strip().replace(" ", "_") + " ", text)
                          if "<p>" in text else text).strip()
    refusal = _refusal(plain, _context(s).refusals)
    if refusal:
        out += fail(f"refuses ({refusal!r})")
    out += check_length(tier, tag, text, s)
    words = _WORD.findall(plain)
    end = plain
    if end.endswith(("...", "\u2026")):
        out += fail("ends with an ellipsis")
    elif end[-1] in ",;:(-/" or _FUNCTION_END.search(end[-16:]):
        out += fail(f"ends mid-sentence ({' '.join(end.split()[-3:])!r})")
    elif len(words) >= s.truncation_min_words and end[-1] not in ".!?\"')]":
        out += fail(f"ends without final punctuation ({' '.join(end.split()[-3:])!r})")
    repeated = None
    if len(words) >= 6 and _SENTENCE_SPLIT.search(plain):
        seen: set[str] = set()
        for x in _SENTENCE_SPLIT.split(plain):
            sent = " ".join(_WORD.findall(x))
            if sent.count(" ") >= 2 and sent in seen:
                repeated = sent
                break
            seen.add(sent)
    if repeated:
        out += fail(f"repeats the sentence {repeated!r}")
    else:
        loop = _loop(words, s.loop_ngram)
        if loop:
            out += fail(f"loops on {loop!r}")
        elif tier != "merge" and len(words) >= 2 * s.repeat_ngram:
            rep = _repeated_ngram([_WORD.findall(x) for x in _SENTENCE_SPLIT.split(plain)], s.repeat_ngram)
            if rep:
                out += fail(f"repeats {rep!r}")
    return out


def _loop(words: list[str], min_n: int) -> str | None:
    """A run of at least `min_n` (and at most 12) words repeated three times back to back."""
    if len(words) < 3 * min_n or len(words) - len(set(words)) < 2 * min_n:
        return None  # three runs of n words repeat at least 2n words
    k = min(min_n, 3)
    grams = list(zip(*(words[i:] for i in range(k))))
    if len(set(grams)) >= len(grams) - 1:
        return None  # a loop repeats its first words three times: some k-gram occurs three times
    at: dict[tuple[str, ...], list[int]] = {}
    for i, g in enumerate(grams):
        at.setdefault(g, []).append(i)
    for places in at.values():
        if len(places) < 3:
            continue
        found = set(places)
        for x, a in enumerate(places):
            for b in places[x + 1:]:
                n = b - a
                if n > 12:
                    break
                if n >= min_n and a + 2 * n in found and words[a:a + n] == words[b:b + n] == words[b + n:b + 2 * n]:
                    return " ".join(words[a:a + n])
    return None


def _repeated_ngram(sentences: list[list[str]], n: int) -> str | None:
    """A run of `n` words within a sentence that occurs twice (not overlapping itself), in any sentences."""
    seen: dict[tuple[str, ...], tuple[int, int]] = {}
    for k, words in enumerate(sentences):
        for i in range(len(words) - n + 1):
            gram = tuple(words[i:i + n])
            first = seen.get(gram)
            if first is not None and (first[0] != k or first[1] + n <= i):
                return " ".join(gram)
            seen.setdefault(gram, (k, i))
    return None


# ------------------------------------------------------------------------------------------------ merge

@dataclass
class _Segment:
    tag: str
    start: int
    end: int
    joint: bool = False  # shares its predicate with the next tag ("<p> a </p> and <p> b </p> are ...")
    sentence: int = 0


def _segments(facts: TextFacts) -> list[_Segment]:
    """Each grounded phrase's stretch of its sentence: from after the last clause break before it (or the sentence's
    start) to the next grounded phrase's stretch (or the sentence's end)."""
    anchors = sorted(facts.anchors)
    segs: list[_Segment] = []
    for i, (off, tag) in enumerate(anchors):
        k = facts.sentence_of(off)
        a, b = facts.sentences[k]
        if segs and segs[-1].sentence == k:
            prev, before = segs[-1], anchors[i - 1][0]
            breaks = [x for x in facts.clause_breaks if before < x < off]
            split = breaks[-1] if breaks else off
            prev.end = split
            prev.joint = _JOINED.fullmatch(facts.text, before + 1, off) is not None
            a = split
        segs.append(_Segment(tag, a, b, sentence=k))
    return segs


_JOINED = re.compile(r"\s*,?\s*(?:and|or|&|as well as)?\s*,?\s*")


def _predicate_problems(facts: TextFacts, seg: _Segment, anchor: int, subject: Subject) -> list[str]:
    """A category said to be the tag's object ("<p> plane-1 </p> [SEG] is a white helicopter", "A bus,
    <p> small vehicles-1 </p> [SEG], ...") must be its category."""
    out = []
    for m in facts.mentions:
        if m.tag is not None or m.weak or m.negated or not (seg.start <= m.start < seg.end):
            continue
        if m.start > anchor:
            gap = facts.text[anchor + 1:m.start]
        elif m.end <= anchor:
            gap = facts.text[m.end:anchor]
        else:
            continue
        gap = re.sub(r"\[seg\]", " ", gap)
        words = re.findall(r"[a-z]+|[,:(\-]", gap)
        if len(words) > 6 or any(w not in _PREDICATE_WORDS and not _adjective_like(w) for w in words):
            continue
        if subject.category not in m.categories:
            out.append(f"{subject.tag}: calls it {m.surface!r} ({_cats(m)}), the plan's object is a "
                       f"{subject.category}")
        break
    return out


_RESPECTIVELY = re.compile(r"\brespectively\b")
_PREDICATE_WORDS = {",", ":", "(", "-", "is", "are", "was", "were", "appears", "appear", "seems", "seem", "to", "be",
                    "looks", "look", "like", "a", "an", "the", "one", "single", "which", "namely", "of", "group",
                    "row", "cluster", "set", "line", "collection", "number", "several", "many", "few", "two",
                    "three", "four", "five", "six", "seven", "eight", "nine", "ten", "numerous", "some"}
_NOT_ADJECTIVE = {"is", "are", "was", "were", "has", "have", "and", "or", "but", "with", "near", "next", "beside",
                  "by", "at", "on", "in", "from", "along", "around", "behind", "between", "among", "parked",
                  "moored", "docked", "located", "sits", "lies", "stands", "while", "where", "which", "that", "its",
                  "their", "surrounded", "adjacent", "close", "opposite", "under", "over", "across", "into", "onto",
                  "toward", "towards", "for", "than", "there", "it", "they", "these", "those", "this"}


def _adjective_like(w: str) -> bool:
    return w.isalpha() and w not in _NOT_ADJECTIVE


def check_merge(facts: TextFacts, tier_facts: Mapping[str, TextFacts], subjects: Mapping[str, Subject],
                scene: Scene, s: VerifySettings = DEFAULT_SETTINGS) -> list[Failure]:
    """The merge keeps every tier text's tag and facts and says nothing of them, or of the scene, that the plan
    contradicts."""
    out: list[str] = []
    anchored = {tag for _, tag in facts.anchors}
    for tag in tier_facts:
        if tag not in anchored:
            out.append(f"drops {tag!r}")
    segs = _segments(facts)
    offsets = dict((tag, off) for off, tag in facts.anchors)
    for i, seg in enumerate(segs):
        subject = subjects.get(seg.tag)
        if subject is None:
            out.append(f"names tag {seg.tag!r}, which the plan does not hold")
            continue
        anchor = offsets[seg.tag]
        # a run of tags joined by "and" or commas shares the last one's predicate: "<p> a </p> [SEG] and
        # <p> b </p> [SEG] are at the top"
        first, last = i, i
        while first > 0 and segs[first - 1].joint:
            first -= 1
        while last + 1 < len(segs) and segs[last].joint:
            last += 1
        joint = last > first
        start, end = seg.start, segs[last].end
        mentions = [m for m in facts.mentions if start <= m.start < end]
        positions = [p for p in facts.positions if start <= p.start < end]
        own = [m for m in mentions if m.tag is None or m.tag == seg.tag]
        if joint and _RESPECTIVELY.search(facts.text, start, end):
            # "... are at the left and right respectively": the k-th place is the k-th tag's
            k, n = i - first, last - first + 1
            positions = [replace(p, cells=p.parts[k], parts=(p.parts[k],)) for p in positions if len(p.parts) == n]
        out += [f"{seg.tag}: {d}" for d in _position_problems(facts, own, positions, subject)]
        if not joint:
            out += _predicate_problems(facts, seg, anchor, subject)
            out += [f"{seg.tag}: {d}" for d in _count_problems(mentions, subject)]
        tier = tier_facts.get(seg.tag)
        if s.merge_keep_facts and tier is not None:
            out += _kept(facts, tier, subject, [x for x in segs if x.tag == seg.tag])
    tagged = {x.sentence for x in segs}
    for k, (a, b) in enumerate(facts.sentences):
        if k in tagged:
            continue
        pos, counts = _scene_problems(facts, scene, a, b, _context(s).uncounted)
        out += pos + counts
    return [Failure("merge", "", "merge", d) for d in out]


def _kept(merge: TextFacts, tier: TextFacts, subject: Subject, segs: list[_Segment]) -> list[str]:
    """The exact count and the position the tier text gave its object are in the merge's sentence of its tag."""
    out = []
    spans = [merge.sentences[x.sentence] for x in segs]
    values = {m.quantity.value for m in tier.mentions
              if m.quantity is not None and m.quantity.value is not None and _fits(m, subject) and not m.qualified}
    if subject.tier == "group":
        for v in sorted(values):
            said = [q for q in merge.quantities if any(a <= q.start < b for a, b in spans)]
            if not any(q.admits(v) and q.high is not None for q in said):
                out.append(f"{subject.tag}: drops the count {v} its group text gives")
    said_where = [p for p in tier.positions if _about_subject(p, tier, list(tier.mentions), subject)]
    if said_where:
        merged = [p for p in merge.positions if any(a <= p.start < b for a, b in spans)]
        for p in said_where:
            if not any(q.whole or _chebyshev(p.cells, q.cells) <= subject.tolerance for q in merged):
                out.append(f"{subject.tag}: drops the position {p.text!r} its {subject.tier} text gives")
                break
    return out


# ------------------------------------------------------------------------------------------ entry points

@dataclass(frozen=True)
class _Run:
    enabled: frozenset[str]

    def on(self, name: str) -> bool:
        return name in self.enabled


def verify_texts(plan: PatchPlan, holistic: str | None, instance_texts: Mapping[str, str],
                 group_texts: Mapping[str, str], description: str | None,
                 settings: VerifySettings = DEFAULT_SETTINGS) -> list[Failure]:
    """Every enabled check on every tier text and the merged description of one plan; a text that is None (not
    drafted) is not checked, an empty one fails `form`."""
    s = settings
    run = _Run(frozenset(s.checks))
    subjects = subjects_of(plan, s)
    scene = scene_of(plan, s)
    out: list[Failure] = []

    read = _parser(plan, s)

    def common(tier: str, tag: str, text: str) -> TextFacts | None:
        facts = read(text) if text and text.strip() else None
        if run.on("form"):
            out.extend(check_form(tier, tag, text, s, facts))
        if run.on("leakage"):
            out.extend(check_leakage(tier, tag, text, plan, s, facts))
        return facts

    holistic_facts = None
    if holistic is not None:
        facts = holistic_facts = common("holistic", "", holistic)
        if facts is not None:
            if run.on("absent"):
                out += check_absent("holistic", facts, scene, s)
            if run.on("position") or run.on("count"):
                out += [f for f in check_scene("holistic", facts, scene, s) if run.on(f.check)]
    tier_facts: dict[str, TextFacts] = {}
    for tier, texts in (("instance", instance_texts), ("group", group_texts)):
        for tag, text in texts.items():
            facts = common(tier, tag, text)
            subject = subjects.get(tag)
            if subject is None:
                out.append(Failure(tier, tag, "category", f"no planned {tier} has the tag {tag!r}"))
                continue
            if facts is None:
                continue
            tier_facts[tag] = facts
            if run.on("category"):
                out += check_category(facts, subject, s)
            if run.on("position"):
                out += check_position(facts, subject, s)
            if run.on("count"):
                out += check_count(facts, subject, s)
    if description is not None:
        if holistic is not None and is_assembly(description, holistic, instance_texts, group_texts):
            # the tier texts joined as they are: it keeps their facts by construction, and they were checked
            if run.on("form"):
                out += check_length("merge", "", description, s)
            if run.on("absent"):
                parts = [p for p in (holistic_facts, *tier_facts.values()) if p is not None]
                seen = {f.detail for f in out if f.check == "absent"}
                for f in (f for p in parts for f in check_absent("merge", p, scene, s)):
                    if f.detail not in seen:
                        seen.add(f.detail)
                        out.append(f)
            return out
        facts = common("merge", "", description)
        if facts is not None:
            if run.on("absent"):
                out += check_absent("merge", facts, scene, s)
            if run.on("merge"):
                out += check_merge(facts, tier_facts, subjects, scene, s)
    return out


def is_assembly(description: str, holistic: str, instance_texts: Mapping[str, str],
                group_texts: Mapping[str, str]) -> bool:
    """Whether a merged description is the deterministic assembly of its tier texts: the template drafter's join
    (its sentences carry their grounded phrases) or the LMM merge's fallback (`<p> tag </p> [SEG] : sentence`)."""
    texts = [*instance_texts.items(), *group_texts.items()]
    whole = description.strip()
    if len(whole) < 0.8 * (len(holistic) + sum(len(v) for _, v in texts)):
        return False  # an assembly holds every text (tags put in, at most a few words replaced)
    joined = " ".join(t for t in [holistic.strip(), *(v.strip() for _, v in texts)] if t)
    if whole == joined:
        return True
    tagged = [f"<p> {tag} </p> [SEG] : {v.strip()}" for tag, v in texts]
    if whole == " ".join(t for t in [holistic.strip(), *tagged] if t):
        return True
    fallback = getattr(merge, "assembled", None)  # the drafter's own fallback, whatever its current shape
    try:
        return fallback is not None and whole == fallback(holistic, texts).strip()
    except Exception:  # noqa: BLE001 - a changed signature only costs the shortcut
        return False


def verify_record(plan: PatchPlan, record: GCGRecord, settings: VerifySettings = DEFAULT_SETTINGS) -> list[Failure]:
    """`verify_texts` on a drafted record's tier texts and description."""
    return verify_texts(plan, record.holistic, {t.tag: t.text for t in record.instance_texts},
                        {t.tag: t.text for t in record.group_texts}, record.description, settings)
