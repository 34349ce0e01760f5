"""What a drafted sentence says, parsed with regular expressions and small word lists: categories, positions, counts.

The checks (`checks.py`) compare these facts with the plan. The parser is built for how vision-language models
write (Qwen2.5-VL, InternVL, InternLM-XComposer): synonyms and plurals ("three white airliners"), British spelling
("centre", "harbour"), hyphenation ("lower-left"), attributes before the noun, relations to neighbouring things
("parked next to two trucks"), orientation ("running from top left to bottom right") and directions ("facing the
top right"), which are not positions. Where a phrase cannot be read with confidence it is left out: a fact not
found can never fail a check, so doubt costs detection, never a false flag.

Grounded phrases (`<p> tag </p> [SEG]`) are replaced by one private-use character (an *anchor*) that stands for the
tag's object, so "Five <p> small vehicles-1 </p> [SEG] are parked" reads as a count of five for that group.
Everything here is pure: text in, frozen dataclasses out.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache

from pipeline.contracts.grounding import PHRASE_RE
from pipeline.verification.synonyms import Lexicon

Cell = tuple[int, int]  # (row, col) in the 3x3 grid the position words name
ALL_CELLS: frozenset[Cell] = frozenset((r, c) for r in range(3) for c in range(3))
ANCHOR = "\ue000"  # stands for a grounded phrase

# ---------------------------------------------------------------------------------------------------- words

NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
TENS = {w: 10 * (i + 2) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
DETERMINERS = {"a", "an", "the", "this", "that", "these", "those", "its", "their", "his", "her", "our", "each",
               "every", "another", "any", "no", "either", "neither", "such"}
SINGULAR_DETS = {"a", "an", "the", "this", "that", "one", "each", "every", "another", "either", "neither"}
# a noun phrase after one of these is a relation to something else, not the sentence's subject
PREPOSITIONS = {"near", "nearby", "next", "beside", "besides", "by", "at", "on", "in", "with", "from", "along",
                "alongside", "around", "behind", "between", "among", "amongst", "adjacent", "close", "opposite",
                "toward", "towards", "past", "beyond", "against", "across", "under", "over", "above", "below",
                "within", "outside", "inside", "into", "onto", "through", "via", "off", "to", "for", "than", "like",
                "including", "of", "surrounded", "flanked", "beneath", "underneath", "atop", "upon", "amid", "amidst",
                "containing", "holding", "without", "except", "besides", "unlike", "serving", "hosting"}
# words that end a noun phrase to their right (verbs, conjunctions, pronouns): no relation, no count beyond them
STOPS = {"is", "are", "was", "were", "be", "been", "being", "has", "have", "had", "contains", "contain", "shows",
         "show", "features", "feature", "includes", "include", "appears", "appear", "seems", "seem", "sits", "sit",
         "lies", "lie", "stands", "stand", "there", "it", "they", "which", "that", "who", "where", "while", "and",
         "or", "but", "nor", "as", "so", "also", "can", "could", "may", "might", "will", "would", "seen", "visible",
         "depicts", "depict", "displays", "display", "reveals", "reveal", "captures", "capture", "occupies",
         "occupy", "fill", "fills", "line", "lines", "dot", "dots", "see", "notice", "find", "spot"}
NEGATIONS = {"no", "not", "without", "none", "never", "nor", "neither", "lacks", "lacking", "lack", "absent",
             "absence", "devoid", "free", "zero", "isn't", "aren't", "wasn't", "weren't", "doesn't", "don't",
             "cannot", "nothing"}
COLOURS = {"white", "black", "grey", "gray", "silver", "red", "blue", "green", "yellow", "orange", "brown", "dark",
           "light", "beige", "tan", "purple", "pink", "turquoise", "teal", "maroon", "navy", "cream", "golden"}
QUALIFIERS = {"other", "another", "more", "additional", "further", "remaining", "extra", "rest"}
PARTITIVE = {"one": 1, "each": 1, "either": 1, "neither": 1, "any": 1}
# ------------------------------------------------------------------------------------------------ positions

_T, _B = r"(?:top|upper|north(?:ern)?)", r"(?:bottom|lower|south(?:ern)?)"
_L, _R = r"(?:left|west(?:ern)?)", r"(?:right|east(?:ern)?)"
_M = r"(?:cent(?:er|re|ral)|middle|mid)"
_S = r"[\s-]*"
_HAND = r"(?:[\s-]+hand)?"
REGION_NOUNS = ("side", "sides", "edge", "edges", "part", "parts", "portion", "portions", "section", "sections",
                "area", "areas", "region", "regions", "half", "corner", "corners", "border", "borders", "end", "ends",
                "margin", "margins", "strip", "quadrant", "quadrants", "third", "flank", "periphery", "zone", "zones",
                "boundary", "fringe", "extremity", "segment", "sector", "expanse", "stretch")
_REGION = r"(?:[\s-]+(?:hand[\s-]+)?(?:" + "|".join(REGION_NOUNS) + r"))?"
# nouns that make a position word an attribute of a part, not where the object is ("the left wing")
NONPOS_NOUNS = {"wing", "wings", "engine", "engines", "lane", "lanes", "turn", "turns", "bank", "banks", "field",
                "fielder", "door", "doors", "line", "lines", "circle", "spot", "mark", "court",
                "surface", "floor", "view", "deck", "decks", "layer", "level", "levels", "roof", "window", "windows",
                "tail", "school", "class", "arm", "arms", "leg", "legs", "goal", "goals", "net", "basket", "hoop",
                "base", "bases", "box", "lid", "hatch", "parts"}
IMAGE_NOUNS = r"(?:image|picture|photo|photograph|scene|frame|view|patch|map|tile|shot|snapshot|imagery|grid|screen)"
DIRECTION_VERBS = {"facing", "faces", "face", "faced", "pointing", "points", "pointed", "point", "heading", "heads",
                   "headed", "moving", "moves", "driving", "drives", "travelling", "traveling", "oriented",
                   "orientated", "angled", "tilted", "tilting", "directed", "aimed", "turning", "turns", "curving",
                   "curves", "curved", "bending", "bends", "leading", "leads", "flowing", "flows", "sloping", "slopes",
                   "nose", "noses", "running", "runs", "extending", "extends", "stretching", "stretches", "looking",
                   "diagonally", "diagonal", "rotated", "inclined", "slanted", "aligned"}
DIRECTION_LINKS = {"to", "toward", "towards", "the", "into", "in", "at", "its", "a", "diagonally", "slightly",
                   "roughly", "mostly", "directly", "straight", "due", "up", "down", "from", "obliquely", "upward",
                   "upwards", "downward", "downwards"}
_FRAME_POSSESSIVES = {"image's", "picture's", "photo's", "scene's", "frame's"}  # "at the image's top left"
FRAME_WORDS = {"the", "far", "extreme", "very", "exact", "absolute", "at", "in", "on", "near", "to", "toward",
               "towards", "along", "across", "around", "by", "within"} | _FRAME_POSSESSIVES
# what makes a position phrase belong to another thing: "next to a parking lot on the right side"
RELATION_WORDS = {"next", "beside", "besides", "near", "nearby", "by", "alongside", "adjacent", "close", "behind",
                  "opposite", "between", "among", "amongst", "with", "surrounded", "flanked", "to", "from", "of",
                  "beyond", "past", "facing", "like", "than", "including", "containing",
                  # verbs that bring in a part or a neighbour: "the court has a parking lot on the right side"
                  "has", "have", "features", "feature", "includes", "include", "contains", "contain", "shows", "show",
                  "displays", "boasts", "hosts", "holds", "hold", "overlooks", "borders"}
PHRASE_VERBS = {"waits", "wait", "waiting", "floats", "float", "floating", "remains", "remain", "spans", "span",
                "crosses", "cross", "sails", "sail", "sailing", "idles", "idle", "stays", "stay", "runs", "run",
                "lines", "stretch", "stretches", "extends", "extend", "sit", "perched", "nestled", "tucked", "located",
                "is", "are", "was", "were", "sits", "lies", "lie", "positioned", "situated",
                "placed", "parked", "stands", "stand", "appears", "appear", "be", "seen", "visible", "found",
                "occupies", "occupying", "occupy", "which", "that", "while", "and", "moored", "docked", "lined",
                "arranged", "clustered", "scattered", "grouped", "gathered", "concentrated", "aligned", "set",
                "built", "lies", "rests", "resting", "sitting", "lying", "standing", "there", "can", "spread",
                "distributed", "waiting", "stationed", "anchored", "berthed"}

_CORNER_CELLS = {("t", "l"): (0, 0), ("t", "r"): (0, 2), ("b", "l"): (2, 0), ("b", "r"): (2, 2)}


def _v(word: str) -> str:
    return "t" if word.startswith(("top", "upper", "north")) else "b"


def _h(word: str) -> str:
    return "l" if word.startswith(("left", "west")) else "r"


def _band(word: str) -> frozenset[Cell]:
    if word.startswith(("top", "upper", "north")):
        return frozenset((0, c) for c in range(3))
    if word.startswith(("bottom", "lower", "south")):
        return frozenset((2, c) for c in range(3))
    if word.startswith(("left", "west")):
        return frozenset((r, 0) for r in range(3))
    if word.startswith(("right", "east")):
        return frozenset((r, 2) for r in range(3))
    return frozenset({(1, 1)})


# (compiled pattern, kind): kinds resolve to cells in `_cells_of`; order is priority (longer forms first)
_POSITION_PATTERNS = [
    (re.compile(rf"\b(?P<v>{_T}|{_B}){_S}(?P<h>{_L}|{_R}){_HAND}{_REGION}\b"), "corner"),
    (re.compile(rf"\b(?P<h>{_L}|{_R})[\s-]+(?P<v>{_T}|{_B}){_REGION}\b"), "corner"),
    (re.compile(rf"\b(?P<v>{_T}|{_B}){_S}(?:{_M}){_REGION}\b"), "vmid"),
    (re.compile(rf"\b(?:{_M})[\s-]+(?P<v>{_T}|{_B}){_REGION}\b"), "vmid"),
    (re.compile(rf"\b(?P<h>{_L}|{_R})[\s-]*(?:{_M}){_REGION}\b"), "hmid"),
    (re.compile(rf"\b(?:{_M})[\s-]+(?P<h>{_L}|{_R}){_HAND}{_REGION}\b"), "hmid"),
    (re.compile(rf"\b(?P<w>{_T}|{_B}|{_L}|{_R})[\s-]+(?:half|halves)\b"), "half"),
    (re.compile(rf"\b(?P<w>{_T}|{_B}|{_L}|{_R}|cent(?:er|re|ral)|middle){_HAND}{_REGION}\b"), "band"),
    (re.compile(r"\bcentrally\b"), "centre"),
]
_WHOLE = re.compile(
    rf"\b(?:(?:across|throughout|all\s+over|over|around|everywhere\s+in|spread\s+over|scattered\s+over|"
    rf"scattered\s+across|distributed\s+across|distributed\s+throughout|all\s+across)\s+(?:the\s+|this\s+)?"
    rf"(?:whole\s+|entire\s+)?(?:aerial\s+)?(?:{IMAGE_NOUNS}|area)s?|(?:the\s+)?(?:whole|entire)\s+(?:aerial\s+)?"
    rf"{IMAGE_NOUNS}|everywhere)\b")
_OF_IMAGE = re.compile(rf"\s+of\s+(?:the|this|that)?\s*(?:[a-z]+\s+){{0,2}}?{IMAGE_NOUNS}\b")
_OF_ANY = re.compile(r"\s+of\b")

# ------------------------------------------------------------------------------------------------- text

_SPACES = re.compile(r"[\s-]+")
_TRANS = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-",
                        "\u2011": "-", "\u2010": "-", "\u00a0": " ", "\u202f": " "})
_TOKEN = re.compile(r"\ue000|[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")
_ABBREVIATIONS = ("no", "approx", "e.g", "i.e", "etc", "st", "dr", "nr", "num")
_CLAUSE_BREAK = re.compile(r"[.!?;:](?=\s|$)|,|\((?=\s|\w)|\b(?:and|while|whereas|but|with|although|though|where)\b")


def normalize(text: str) -> str:
    """Lower case, straight quotes, plain hyphens and spaces; the same length, so offsets stay valid."""
    t = text.translate(_TRANS)
    low = t.lower()
    return low if len(low) == len(t) else "".join(c.lower() if len(c.lower()) == 1 else c for c in t)


# ------------------------------------------------------------------------------------------------ records

@dataclass(frozen=True)
class Quantity:
    """A stated number of things: a number ("12", "twelve", "about 20", "more than a hundred") or a quantity word."""

    start: int
    end: int
    text: str
    low: int
    high: int | None  # None: no upper bound
    value: int | None  # the number stated without hedging ("five"; not "about five", not "several")

    def admits(self, count: int) -> bool:
        return self.low <= count and (self.high is None or count <= self.high)


@dataclass(frozen=True)
class Mention:
    """A category named in the text (or a grounded phrase standing for a tag's object)."""

    start: int
    end: int
    surface: str
    categories: frozenset[str]
    plural: bool | None  # grammatical number of the noun; None for anchors and "aircraft"
    weak: bool  # a name with an everyday meaning too ("field")
    tag: str | None  # the tag of an anchor
    relational: bool  # governed by a preposition ("next to two trucks"): not the subject
    negated: bool  # "no ships", "without any vehicles"
    quantity: Quantity | None  # the count attached ("five white cars", "a row of cars")
    determiner: str | None  # the determiner that opens its noun phrase ("a", "the", "one")
    qualified: bool  # "other", "another", "more": a count of something besides the subject


@dataclass(frozen=True)
class PositionPhrase:
    """An absolute position in the patch ("in the lower-left corner", "along the top edge", "across the image")."""

    start: int
    end: int
    text: str
    cells: frozenset[Cell]
    whole: bool  # the whole image: agrees with everything
    parts: tuple[frozenset[Cell], ...]  # a list's places in order ("at the center, bottom and top respectively")
    attached: tuple[int, int] | None  # the noun phrase of a relation it modifies ("next to a parking lot on the
    # right side": where the lot is), None when nothing says it is not where the subject is


@dataclass(frozen=True)
class TextFacts:
    """One text, parsed: the normalized text (anchors in place of grounded phrases) and what it says."""

    text: str
    anchors: tuple[tuple[int, str], ...]  # (offset, tag)
    mentions: tuple[Mention, ...]
    positions: tuple[PositionPhrase, ...]
    quantities: tuple[Quantity, ...]

    @cached_property
    def sentences(self) -> tuple[tuple[int, int], ...]:
        """Character spans of the sentences (worked out when a check first asks)."""
        return tuple(_sentences(self.text))

    @cached_property
    def clause_breaks(self) -> tuple[int, ...]:
        """Offsets of clause boundaries, ascending; none inside a name, a position or a quantity."""
        protected = [(m.start, m.end) for m in self.mentions] + [(p.start, p.end) for p in self.positions] + \
            [(q.start, q.end) for q in self.quantities]
        return tuple(_clause_breaks(self.text, protected))

    def clause_of(self, offset: int) -> int:
        return bisect.bisect_right(self.clause_breaks, offset)

    def sentence_of(self, offset: int) -> int:
        return max(0, min(bisect.bisect_right(self._sentence_starts, offset) - 1, len(self.sentences) - 1))

    @cached_property
    def _sentence_starts(self) -> list[int]:
        return [a for a, _ in self.sentences]

    def subject(self, category: str) -> Mention | None:
        return subject_of(self.mentions, category)


def subject_of(mentions, category: str) -> Mention | None:
    """The subject as far as categories go: the first mention not governed by a preposition, not negated,
    skipping weak names that do not fit `category` (a "green field" around a tennis court)."""
    for m in mentions:
        if m.relational or m.negated or (m.weak and category not in m.categories):
            continue
        return m
    return None


# --------------------------------------------------------------------------------------------- numbers

_UNIT = "|".join(sorted(NUMBER_WORDS, key=len, reverse=True))
_TEN = "|".join(TENS)
_NUM = (rf"(?:\d{{1,3}}(?:,\d{{3}})+|\d+(?!\.\d)|half\s+a\s+dozen|a\s+dozen|a\s+hundred|"
        rf"(?:(?:{_TEN})(?:[\s-]+(?:{_UNIT}))?|{_UNIT})(?:\s+(?:dozen|hundred))?)")
_APPROX = {"about": "approx", "around": "approx", "approximately": "approx", "approx.": "approx", "approx": "approx",
           "roughly": "approx", "nearly": "approx", "almost": "approx", "some": "approx", "close to": "approx",
           "an estimated": "approx", "estimated": "approx", "circa": "approx", "~": "approx", "just over": "approx",
           "just under": "approx", "at least": "ge", "no fewer than": "ge", "no less than": "ge", "more than": "gt",
           "over": "gt", "upwards of": "gt", "in excess of": "gt", "fewer than": "lt", "less than": "lt",
           "under": "lt", "up to": "le", "at most": "le", "no more than": "le", "not more than": "le"}
_APPROX_RE = "|".join(re.escape(k).replace(r"\ ", r"\s+") for k in sorted(_APPROX, key=len, reverse=True))
_COLLECTIVES = r"(?:rows|lines|groups|clusters|columns|rings|sets|pairs|dozens|clumps|queues|blocks)"


def number_value(s: str) -> tuple[int, bool] | None:
    """(value, approximate by nature) of a number written in digits or words ("a dozen" is about 12)."""
    if s.isdigit():
        return int(s), False
    if s in NUMBER_WORDS:
        return NUMBER_WORDS[s], False
    s = _SPACES.sub(" ", s.strip())
    if s.replace(",", "").isdigit():
        return int(s.replace(",", "")), False
    if s == "a dozen":
        return 12, True
    if s == "half a dozen":
        return 6, True
    if s == "a hundred":
        return 100, True
    words = s.split()
    mult, approx = 1, False
    if words and words[-1] in ("dozen", "hundred"):
        mult, approx = (12, True) if words[-1] == "dozen" else (100, False)
        words = words[:-1]
    total = 0
    for w in words:
        if w in TENS:
            total += TENS[w]
        elif w in NUMBER_WORDS:
            total += NUMBER_WORDS[w]
        else:
            return None
    return total * mult, approx


@lru_cache(maxsize=16)
def _quantity_re(vague_words: tuple[str, ...]) -> re.Pattern:
    vague = "|".join(re.escape(w).replace(r"\ ", r"[\s-]+") for w in sorted(vague_words, key=len, reverse=True))
    return re.compile(
        rf"(?<![\w.])(?:between\s+(?P<b1>{_NUM})\s+and\s+(?P<b2>{_NUM})"
        rf"|(?:(?P<ra>{_APPROX_RE})\s+)?(?:(?P<r1>\d+)\s*-\s*(?P<r2>\d+)|(?P<r3>{_NUM})\s+(?:to|or)\s+(?P<r4>{_NUM}))(?![\w])"
        rf"|(?:(?P<ap>{_APPROX_RE})\s+)?(?P<n>{_NUM})(?P<suf>\s+or\s+so|\s+or\s+more|\+|[\s-]odd)?"
        rf"(?:\s+(?P<coll>{_COLLECTIVES})\s+of)?"
        rf"|(?P<vague>{vague}))(?![\w]|-[a-z])")  # "twin-engine", "two-lane", "single-storey": adjectives


@lru_cache(maxsize=16)
def _quantity_starts(vague_words: tuple[str, ...]) -> tuple[frozenset[str], frozenset[tuple[str, str]]]:
    """(single words, word pairs) a quantity can begin with: the pattern is tried only there, so the many "a"
    and "the" of a text cost a set look-up, not a match."""
    forms = [*_APPROX, *vague_words, "a dozen", "half a dozen", "a hundred", "between"]
    singles = set(NUMBER_WORDS) | set(TENS) | {"~"}
    pairs: set[tuple[str, str]] = set()
    for f in forms:
        words = [w.rstrip(".") for w in re.split(r"[\s-]+", f)]
        if len(words) == 1:
            singles.add(words[0])
        else:
            pairs.add((words[0], words[1]))
    return frozenset(singles), frozenset(pairs)


_PRONOUN_ONE = {"this", "that", "the", "each", "every", "which", "any", "no", "another", "last", "first", "other",
                "same", "larger", "smaller", "bigger", "big", "small", "large", "left", "right", "lower", "upper",
                "only", "single", "new", "old", "main"}


@lru_cache(maxsize=16)
def _pair_firsts(pairs: frozenset[tuple[str, str]]) -> frozenset[str]:
    return frozenset(a for a, _ in pairs)


@dataclass(frozen=True, eq=False)  # hashed by identity: a cache key built once per table
class QuantityWords:
    """The quantity words and their counts, compiled: what `_quantities` needs, built once per settings."""

    table: dict[str, tuple[int, int | None]]
    tolerance: float
    pattern: re.Pattern
    singles: frozenset[str]
    pairs: frozenset[tuple[str, str]]
    firsts: frozenset[str]


@lru_cache(maxsize=16)
def quantity_words(items: tuple[tuple[str, tuple[int, int | None]], ...], tolerance: float) -> QuantityWords:
    """The compiled table of (word, (low, high)) items; "about N" admits N within `tolerance`."""
    words = tuple(w for w, _ in items)
    singles, pairs = _quantity_starts(words)
    return QuantityWords(dict(items), tolerance, _quantity_re(words), singles, pairs, _pair_firsts(pairs))


def _quantities(text: str, words: QuantityWords, tokens: "_Tokens") -> list[Quantity]:
    pattern, singles, pairs, firsts = words.pattern, words.singles, words.pairs, words.firsts
    toks, starts, out, end = tokens.words, tokens.starts, [], -1
    last = len(toks) - 1
    for i in [i for i, w in enumerate(toks) if w in singles or w in firsts or w[0].isdigit()]:
        w, start = toks[i], starts[i]
        if start < end or (w not in singles and not w[0].isdigit() and (i == last or (w, toks[i + 1]) not in pairs)):
            continue
        if w == "one" and i > 0 and toks[i - 1] in _PRONOUN_ONE:
            continue  # "this one", "the larger one": a pronoun, not a count
        m = pattern.match(text, start)
        if m:
            end = m.end()
            q = _quantity(m, words.table, words.tolerance)
            if q is not None:
                out.append(q)
    return out


def _approx_range(n: int, tolerance: float) -> tuple[int, int]:
    spread = max(1, round(n * tolerance))
    return max(0, n - spread), n + spread


def _quantity(m: re.Match, vague: Mapping[str, tuple[int, int | None]], tolerance: float) -> Quantity | None:
    text = m.group(0)
    if m["vague"]:
        word = m["vague"]
        low, high = vague[word] if word in vague else vague[_SPACES.sub(" ", word)]
        return Quantity(m.start(), m.end(), text, low, high, None)
    if m["b1"] or m["r1"] or m["r3"]:
        a, b = number_value(m["b1"] or m["r1"] or m["r3"]), number_value(m["b2"] or m["r2"] or m["r4"])
        if a is None or b is None:
            return None
        lo, hi = sorted((a[0], b[0]))
        return Quantity(m.start(), m.end(), text, lo, hi, None)
    parsed = number_value(m["n"])
    if parsed is None:
        return None
    n, approx = parsed
    ap = m["ap"]
    kind = (_APPROX.get(ap) or _APPROX.get(_SPACES.sub(" ", ap))) if ap else None
    suffix = (m["suf"] or "").strip()
    if kind == "approx" or suffix in ("or so", "odd") or (approx and kind is None):
        low, high = _approx_range(n, tolerance)
    elif kind == "gt":
        low, high = n + 1, None
    elif kind == "ge" or suffix in ("or more", "+"):
        low, high = n, None
    elif kind == "lt":
        low, high = 0, max(n - 1, 0)
    elif kind == "le":
        low, high = 0, n
    else:
        low = high = n
    if m["coll"]:  # "three rows of cars": at least two in each
        low, high = (12 if m["coll"] == "dozens" else 2) * max(n, 1), None
    value = n if (low == high == n and not approx) else None
    return Quantity(m.start(), m.end(), text, low, high, value)


# ---------------------------------------------------------------------------------------------- parsing

@dataclass
class _Tokens:
    starts: list[int]
    ends: list[int]
    words: list[str]
    quantity: list[int | None]  # index of the quantity a token lies in

    @classmethod
    def of(cls, text: str) -> "_Tokens":
        found = list(_TOKEN.finditer(text))
        starts = [m.start() for m in found]
        words = [m.group() for m in found]
        return cls(starts, [a + len(w) for a, w in zip(starts, words)], words, [None] * len(words))

    def mark(self, quantities: list["Quantity"]) -> None:
        for k, q in enumerate(quantities):
            for j in range(self.index_at(q.start), len(self.words)):
                if self.starts[j] >= q.end:
                    break
                self.quantity[j] = k

    def index_at(self, offset: int) -> int:
        """Index of the first token starting at or after `offset`."""
        return bisect.bisect_left(self.starts, offset)


def _strip_phrases(text: str) -> tuple[str, list[tuple[int, str]]]:
    """The text with each `<p> tag </p> [SEG]` replaced by ANCHOR, and (offset, tag) of each."""
    if "<p>" not in text:
        return text, []
    parts, anchors, last, length = [], [], 0, 0
    for m in PHRASE_RE.finditer(text):
        parts.append(text[last:m.start()])
        length += m.start() - last
        anchors.append((length, m["text"].strip()))
        parts.append(ANCHOR)
        length += 1
        last = m.end()
    parts.append(text[last:])
    return "".join(parts), anchors


def _walk_back(tokens: _Tokens, first: int, quantities: list[Quantity]) -> tuple[bool, Quantity | None, str | None, bool]:
    """From the token before a noun, leftwards over its modifiers: (relational, quantity, determiner, qualified).

    Stops at a determiner (then looks one word further for a preposition or a partitive "one of the"), at a
    preposition (relational), or at a verb, conjunction or punctuation (neither)."""
    j, steps, quantity, qualified = first - 1, 0, None, False
    while j >= 0 and steps < 7:
        w = tokens.words[j]
        k = tokens.quantity[j]
        if k is not None:
            if quantity is None:
                quantity = quantities[k]
            while j >= 0 and tokens.starts[j] >= quantities[k].start:
                j -= 1
            steps += 1
            continue
        if w in QUALIFIERS:
            qualified = True
        if w in DETERMINERS:
            before = tokens.words[j - 1] if j >= 1 else ""
            if before == "of" and j >= 2:
                k2 = tokens.quantity[j - 2]
                part = tokens.words[j - 2]
                if k2 is not None:
                    return False, quantities[k2], w, qualified
                if part in PARTITIVE:
                    return False, Quantity(tokens.starts[j - 2], tokens.ends[j - 2], part, 1, 1, 1), w, qualified
            return before in PREPOSITIONS, quantity, w, qualified
        if w in PREPOSITIONS:
            if w == "of" and j >= 1 and tokens.words[j - 1] in PARTITIVE:
                return False, Quantity(tokens.starts[j - 1], tokens.ends[j - 1], tokens.words[j - 1], 1, 1, 1), None, qualified
            if w == "of" and j >= 1 and tokens.quantity[j - 1] is not None:
                k2 = tokens.quantity[j - 1]
                return False, quantity or quantities[k2], None, qualified
            return True, quantity, None, qualified
        if w in ("and", "or") and j >= 1 and tokens.words[j - 1] in COLOURS and tokens.words[j + 1] in COLOURS:
            j -= 1  # "red and white rotorcraft": one noun phrase
            continue
        if w in STOPS or w in NEGATIONS or (len(w) == 1 and w not in "-/&" and not w.isalnum()) or w == ANCHOR:
            return False, quantity, None, qualified
        j -= 1
        steps += 1
    return False, quantity, None, qualified


def _negated(tokens: _Tokens, first: int, last: int, breaks: list[int]) -> bool:
    """A negation word up to six words before the noun in its clause, or "not"/"absent" just after it."""
    for j in range(first - 1, max(first - 7, -1), -1):
        w = tokens.words[j]
        if w in (".", ";", "!", "?", ":") or w == "but":
            break
        if w in NEGATIONS:
            return True
    for j in range(last + 1, min(last + 4, len(tokens.words))):
        w = tokens.words[j]
        if w in ("not", "absent", "missing", "nowhere") or w.endswith("n't"):
            return True
        if w in (".", ";", ",", "and", "but"):
            break
    return False


def _names_in(text: str, tokens: _Tokens, lexicon: Lexicon) -> list[tuple[int, int]]:
    """(start, end) of every category name, outside the word groups the lexicon excludes ("car park"); the
    pattern is tried only at words that begin some name."""
    found, end = [], -1
    match, firsts = lexicon.pattern.match, lexicon.first_words
    for start, w in zip(tokens.starts, tokens.words):
        if start >= end and (w in firsts or w.partition("'")[0] in firsts):
            m = match(text, start)
            if m:
                found.append((start, m.end()))
                end = m.end()
    if found:
        excluded = [(m.start(), m.end()) for m in lexicon.exclusions.finditer(text)]
        if excluded:
            found = [(a, b) for a, b in found if not any(x <= a < y for x, y in excluded)]
    return found


def _mentions(text: str, tokens: _Tokens, lexicon: Lexicon, anchors: list[tuple[int, str]],
              anchor_categories: Mapping[str, str | None], quantities: list[Quantity]) -> list[Mention]:
    found: list[tuple[int, int, str | None]] = [(a, b, None) for a, b in _names_in(text, tokens, lexicon)]
    found += [(off, off + 1, tag) for off, tag in anchors]
    found.sort()
    out = []
    for start, end, tag in found:
        first = tokens.index_at(start)
        last = max(tokens.index_at(end) - 1, first)
        if first >= len(tokens.words):
            continue
        relational, quantity, det, qualified = _walk_back(tokens, first, quantities)
        negated = _negated(tokens, first, last, [])
        if tag is not None:
            cat = anchor_categories.get(tag)
            cats = frozenset([cat]) if cat else frozenset()
            out.append(Mention(start, end, tag, cats, None, False, tag, relational, negated, quantity, det, qualified))
            continue
        surface = text[start:end]
        if surface not in lexicon.names:
            surface = _SPACES.sub(" ", surface)
        name = lexicon.names[surface]
        out.append(Mention(start, end, surface, name.categories, name.plural, name.weak, None, relational, negated,
                           quantity, det, qualified))
    return out


def _cells_of(kind: str, m: re.Match) -> frozenset[Cell]:
    if kind == "corner":
        return frozenset({_CORNER_CELLS[(_v(m["v"]), _h(m["h"]))]})
    if kind == "vmid":
        return frozenset({(0, 1) if _v(m["v"]) == "t" else (2, 1)})
    if kind == "hmid":
        return frozenset({(1, 0) if _h(m["h"]) == "l" else (1, 2)})
    if kind == "half":
        band = _band(m["w"])
        rows, cols = {r for r, _ in band}, {c for _, c in band}
        if len(rows) == 1:  # a row band: the half reaches the middle row
            return band | frozenset((1, c) for c in cols)
        return band | frozenset((r, 1) for r in rows)
    if kind == "centre":
        return frozenset({(1, 1)})
    word = m["w"]
    if m.group(0).endswith("half"):
        return _cells_of("half", m)
    return _band(word)


_LAST_WORD = re.compile(r"[a-z]+$")


def _is_region_noun(phrase: str) -> bool:
    m = _LAST_WORD.search(phrase)
    return m is not None and m.group() in REGION_NOUNS


def _combined_positions() -> re.Pattern:
    """One pattern of every position form (the whole image first, then longest forms first), each alternative in a
    group `k<i>` whose inner groups are renamed `<name><i>`, so one scan finds them all."""
    alternatives = [f"(?P<k0>{_WHOLE.pattern})"]
    for i, (pattern, _) in enumerate(_POSITION_PATTERNS, start=1):
        body = re.sub(r"\(\?P<(\w+)>", lambda m: f"(?P<{m[1]}{i}>", pattern.pattern)
        alternatives.append(f"(?P<k{i}>{body})")
    return re.compile("|".join(alternatives))


_POSITIONS = _combined_positions()
_KINDS = ["whole"] + [kind for _, kind in _POSITION_PATTERNS]


class _Renamed:
    """A match's groups under their names in `_POSITION_PATTERNS` (v, h, w)."""

    def __init__(self, m: re.Match, i: int):
        self.m, self.i = m, i

    def __getitem__(self, name: str):
        return self.m.group(f"{name}{self.i}")

    def group(self, k: int = 0) -> str:
        return self.m.group(k)


_POSITION_START = re.compile(r"\b(?:top|upper|north|bottom|lower|south|left|west|right|east|cent|middle|mid|"
                             r"across|throughout|all|over|around|everywhere|spread|scattered|distributed|whole|"
                             r"entire)")


def _raw_positions(text: str) -> list[tuple[int, int, frozenset[Cell], str, bool]]:
    """(start, end, cells, kind, has region noun) of every position word group, leftmost and longest first (the
    combined pattern is tried only where a position can begin)."""
    out, end = [], -1
    for t in _POSITION_START.finditer(text):
        if t.start() < end:
            continue
        m = _POSITIONS.match(text, t.start())
        if m is None:
            continue
        end = m.end()
        i = int(m.lastgroup[1:])
        kind = _KINDS[i]
        if kind == "whole":
            out.append((m.start(), m.end(), ALL_CELLS, "whole", True))
        else:
            out.append((m.start(), m.end(), _cells_of(kind, _Renamed(m, i)), kind, _is_region_noun(m.group(0))))
    return out


def _words_before(tokens: _Tokens, offset: int, n: int) -> list[str]:
    i = tokens.index_at(offset)
    return tokens.words[max(0, i - n):i]


_NEXT_WORD = re.compile(r"\s*([a-z']+|\S)")
_OF_NEXT = re.compile(r"\s+(?:side\s+)?of\b")
_OF_THE = re.compile(r"\s+of\s+(?:the\s+)?")
_FROM_BEFORE = re.compile(r"\b(?:from|between)\s+(?:the\s+)?$")
_TO_BETWEEN = re.compile(r"\s*,?\s*(?:to|towards?|and|into)\s+(?:the\s+)?")
_PLAIN_TO = re.compile(r"\s+to\s+(?:the\s+)?")
_AND_BETWEEN = re.compile(r"\s*(?:,\s*(?:and\s+|or\s+)?|(?:and|or|&)\s+)(?:the\s+)?(?:on\s+the\s+|at\s+the\s+|in\s+the\s+)?")
_LIST_BETWEEN = re.compile(r"\s*(?:,\s*(?:and\s+|or\s+)?|(?:and|or|&)\s+)")
_BARE_WORD = re.compile(r"(?:top|bottom|left|right|north|south|east|west|cent(?:er|re)|middle)")


def _next_word(text: str, end: int) -> str:
    m = _NEXT_WORD.match(text, end)
    return m.group(1) if m else ""


def _positions(text: str, tokens: _Tokens, quantities: list[Quantity]) -> list[PositionPhrase]:
    raw = _raw_positions(text)
    kept: list[list] = []  # [start, end, cells, whole, skip]
    for start, end, cells, kind, region in raw:
        before = _words_before(tokens, start, 5)
        prev = before[-1] if before else ""
        nxt = _next_word(text, end)
        whole = kind == "whole"
        skip = False
        if not whole:
            if kind == "band" and not region:
                word = text[start:end]
                if prev not in FRAME_WORDS:
                    skip = True
                elif word.startswith(("center", "centre", "middle")) and prev not in ("the", "very", "exact"):
                    skip = True
                elif word.startswith(("central", "upper", "lower")):
                    skip = True  # adjectives alone: "a central courtyard", "the upper deck"
            if nxt in NONPOS_NOUNS:
                skip = True
            if prev in ("its", "their", "his", "her", "whose") or (prev.endswith("'s") and prev not in _FRAME_POSSESSIVES):
                skip = True
            # a direction, not a place: "facing the top right", "its nose pointing toward the upper left"
            for w in reversed(before):
                if w in DIRECTION_VERBS:
                    skip = True
                    break
                if w not in DIRECTION_LINKS:
                    break
            if _OF_NEXT.match(text, end) and not _OF_IMAGE.match(text, end):
                skip = "of"  # "to the left of the building", "the middle of the road": maybe combined below
        kept.append([start, end, cells, whole, skip, kind == "band" and not region])
    # a list goes on without its preposition: "at the center, bottom and top", "at the left and right"
    for a, b in zip(kept, kept[1:]):
        if b[4] is True and b[5] and not a[4] and _LIST_BETWEEN.fullmatch(text, a[1], b[0]) and \
                _next_word(text, b[1]) not in NONPOS_NOUNS:
            b[4] = False
    # "the middle of the left side", "the left side of the bottom edge": one phrase
    for a, b in zip(kept, kept[1:]):
        between = text[a[1]:b[0]]
        if a[4] == "of" and _OF_THE.fullmatch(between):
            if a[2] == frozenset({(1, 1)}) and len(b[2]) == 3:
                rows, cols = {r for r, _ in b[2]}, {c for _, c in b[2]}
                cells = frozenset({(min(rows), 1)} if len(rows) == 1 else {(1, min(cols))})
            else:
                cells = (a[2] & b[2]) or b[2]
            b[0], b[2] = a[0], cells
            a[4] = True
    # "from the top left to the bottom right", "top-left to bottom-right": an extent or orientation, not a place
    for i, a in enumerate(kept):
        if _FROM_BEFORE.search(text, max(0, a[0] - 15), a[0]):
            a[4] = True
            if i + 1 < len(kept) and _TO_BETWEEN.fullmatch(text, a[1], kept[i + 1][0]):
                kept[i + 1][4] = True
        if i + 1 < len(kept) and _PLAIN_TO.fullmatch(text, a[1], kept[i + 1][0]):
            a[4] = kept[i + 1][4] = True
    # "on the left and right sides", "top and bottom edges": one phrase covering both
    merged: list[list] = []
    for a in kept:
        if merged and not merged[-1][4] and not a[4] and _AND_BETWEEN.fullmatch(text, merged[-1][1], a[0]):
            merged[-1][1], merged[-1][2] = a[1], merged[-1][2] | a[2]
            merged[-1][3] = merged[-1][3] or a[3]
            merged[-1][6].append(a[2])
            continue
        merged.append([*a, [a[2]]])
    out = []
    for start, end, cells, whole, skip, _, parts in merged:
        if skip:
            continue
        out.append(PositionPhrase(start, end, text[start:end], cells, whole, tuple(parts),
                                  _attached(tokens, start, quantities)))
    return out


def _bare(p: PositionPhrase, text: str) -> bool:
    """A single band word with no region noun and no "of the image" ("in the middle", "on the left")."""
    return not p.whole and len(p.cells) in (1, 3) and not _is_region_noun(p.text) and \
        _BARE_WORD.fullmatch(p.text) is not None and \
        not _OF_IMAGE.match(text, p.end)


def _part_of_something(p: PositionPhrase, tokens: _Tokens, mention_ends: set[int]) -> bool:
    """Whether a bare band word places a part or a neighbour rather than the subject: the word before its
    preposition is a plain noun or a verb of motion ("a green island in the middle", "a net running across the
    middle", "a door on the left"), not a category, a verb of place, a clause's start or a quantity."""
    i = tokens.index_at(p.start) - 1
    while i >= 0 and tokens.words[i] in ("the", "far", "very", "extreme", "exact"):
        i -= 1
    if i >= 0 and tokens.words[i] in FRAME_WORDS:
        i -= 1
    if i < 0:
        return False
    w = tokens.words[i]
    if tokens.ends[i] in mention_ends or w == ANCHOR or w in PHRASE_VERBS or w in STOPS:
        return False
    if i >= 1 and (tokens.ends[i - 1] in mention_ends or tokens.words[i - 1] == ANCHOR):
        return False  # the word after a category is its verb: "a small ship floats in the center"
    if len(w) == 1 and not w.isalnum():
        return False
    if w.endswith("ly") or w in _FORMATION_WORDS:
        return False
    return True


# words between the subject and a bare position that keep the position the subject's ("parked in a row at the top")
_FORMATION_WORDS = {"up", "together", "side", "row", "rows", "line", "lines", "formation", "pairs", "pair", "cluster",
                    "clusters", "group", "groups", "apart", "away", "nearby", "too", "all", "here", "mainly", "mostly",
                    "only", "alone", "themselves", "itself", "area", "located", "one", "ones"}


COLLECTIVE_NOUNS = {"group", "groups", "row", "rows", "line", "lines", "cluster", "clusters", "number", "fleet",
                    "set", "series", "collection", "couple", "pair", "handful", "dozen", "dozens", "lot", "lots",
                    "plenty", "host", "bunch", "queue", "column", "convoy", "one", "each", "some", "many", "several",
                    "all", "most", "both", "none", "hundreds", "scores", "multitude", "variety", "array", "cluster"}


def _attached(tokens: _Tokens, start: int, quantities: list[Quantity]) -> tuple[int, int] | None:
    """The span of the noun phrase a position phrase modifies when a relation introduced it ("next to a parking
    lot on the right side": "a parking lot"), or None when it is where the sentence's subject is.

    "of" after a quantity or a collective ("a group of 2 small vehicles at the top") is no relation."""
    i = tokens.index_at(start) - 1
    while i >= 0 and tokens.words[i] in ("the", "far", "very", "extreme"):
        i -= 1
    if i >= 0 and tokens.words[i] in FRAME_WORDS | {"located", "positioned", "situated"}:
        i -= 1  # the phrase's own preposition
    end = tokens.ends[i] if i >= 0 else start
    content = 0
    for j in range(i, max(i - 7, -1), -1):
        w = tokens.words[j]
        if w not in RELATION_WORDS and (w in PHRASE_VERBS or w in STOPS or (len(w) == 1 and not w.isalnum() and w != "-")
                                        or w == ANCHOR):
            return None
        if w in RELATION_WORDS:
            if w == "of" and j >= 1 and (tokens.words[j - 1] in COLLECTIVE_NOUNS
                                         or tokens.quantity[j - 1] is not None):
                continue
            return (tokens.starts[j + 1], end) if content > 0 else None
        if w not in DETERMINERS:
            content += 1
    return None


def _sentences(text: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        before = text[max(0, m.start() - 7):m.start()].rsplit(" ", 1)[-1]
        if before in _ABBREVIATIONS:
            continue
        if text[start:m.end()].strip():
            spans.append((start, m.end()))
        start = m.end()
    if text[start:].strip():
        spans.append((start, len(text)))
    return spans or [(0, len(text))]


def _clause_breaks(text: str, protected: list[tuple[int, int]]) -> list[int]:
    """Clause boundaries outside the protected spans (names such as "track and field", lists of places)."""
    spans = sorted(protected)
    starts = [a for a, _ in spans]
    ends, reach = [], -1
    for _, b in spans:
        reach = max(reach, b)
        ends.append(reach)  # the farthest end among the spans starting at or before each one
    out = []
    for m in _CLAUSE_BREAK.finditer(text):
        k = bisect.bisect_right(starts, m.start()) - 1
        if k < 0 or ends[k] <= m.start():
            out.append(m.start())
    return out


def parse_text(text: str, lexicon: Lexicon, vague: "Mapping[str, tuple[int, int | None]] | QuantityWords",
               approx_tolerance: float, tag_categories: Mapping[str, str | None] | None = None) -> TextFacts:
    """Parse one text. `tag_categories` names the category of each tag a grounded phrase may hold (unknown tags get
    the category their name spells, or none).

    Every window the parser looks through stops at a sentence's end, so sentences are parsed one by one and
    remembered (a merge repeats its tier texts' sentences; templates repeat across patches)."""
    clean, anchors = _strip_phrases(text)
    norm = normalize(clean)
    cats = dict(tag_categories or {})
    for _, tag in anchors:
        if tag not in cats:
            base = re.sub(r"\s*-\s*\d+$", "", tag.lower())
            named = lexicon.categories_named(base)
            cats[tag] = next(iter(named)) if len(named) == 1 else None
    words = vague if isinstance(vague, QuantityWords) else \
        quantity_words(tuple(sorted((k, tuple(v)) for k, v in vague.items())), approx_tolerance)
    mentions: list[Mention] = []
    positions: list[PositionPhrase] = []
    quantities: list[Quantity] = []
    k = 0
    for a, b in _sentences(norm):
        inside = []
        while k < len(anchors) and anchors[k][0] < b:
            if anchors[k][0] >= a:
                inside.append((anchors[k][0] - a, anchors[k][1], cats.get(anchors[k][1])))
            k += 1
        ms, ps, qs = _parse_sentence(norm[a:b], tuple(inside), lexicon, words)
        if a == 0:
            mentions += ms
            positions += ps
            quantities += qs
            continue
        moved = {id(q): _shift_q(q, a) for q in qs}
        quantities += moved.values()
        mentions += [Mention(m.start + a, m.end + a, m.surface, m.categories, m.plural, m.weak, m.tag, m.relational,
                             m.negated, None if m.quantity is None else moved[id(m.quantity)] if id(m.quantity) in moved
                             else _shift_q(m.quantity, a), m.determiner, m.qualified) for m in ms]
        positions += [PositionPhrase(p.start + a, p.end + a, p.text, p.cells, p.whole, p.parts,
                                     None if p.attached is None else (p.attached[0] + a, p.attached[1] + a)) for p in ps]
    return TextFacts(norm, tuple(anchors), tuple(mentions), tuple(positions), tuple(quantities))


def clear_cache() -> None:
    """Forget the sentences parsed so far (benchmarks time a cold start with it)."""
    _parse_sentence.cache_clear()


def _shift_q(q: Quantity, a: int) -> Quantity:
    return Quantity(q.start + a, q.end + a, q.text, q.low, q.high, q.value)


@lru_cache(maxsize=8192)
def _parse_sentence(sentence: str, anchors: tuple[tuple[int, str, str | None], ...], lexicon: Lexicon,
                    words: QuantityWords) -> tuple[tuple, tuple, tuple]:
    """(mentions, positions, quantities) of one normalized sentence, offsets within it."""
    tokens = _Tokens.of(sentence)
    quantities = _quantities(sentence, words, tokens)
    tokens.mark(quantities)
    mentions = _mentions(sentence, tokens, lexicon, [(off, tag) for off, tag, _ in anchors],
                         {tag: cat for _, tag, cat in anchors}, quantities)
    ends = {m.end for m in mentions}
    positions = [p for p in _positions(sentence, tokens, quantities)
                 if not (_bare(p, sentence) and _part_of_something(p, tokens, ends))]
    return tuple(mentions), tuple(positions), tuple(quantities)
