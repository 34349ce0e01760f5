"""The settings of the text checks (`pipeline/verification/checks.py`): one validated, frozen model.

Every judgement the checks make that a reasonable person could make differently is a field here with a documented
default: which names count as a category, how far a position phrase may be from the plan, what "several" may mean,
how long a tier text may be. Defaults were chosen on realistic VLM sentences (tests/pipeline/verification/data and
bench/verify_checks.py report what they catch and what they flag wrongly).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.verification.synonyms import DEFAULT_IMPLIED, DEFAULT_SYNONYMS, DEFAULT_WEAK, Lexicon, build_lexicon

CheckName = Literal["category", "position", "count", "leakage", "absent", "form", "merge"]
ALL_CHECKS: tuple[CheckName, ...] = ("category", "position", "count", "leakage", "absent", "form", "merge")
Count = Annotated[int, Field(ge=0, le=10**9)]

# vague quantity words -> the counts they may describe (low, high; None: no upper bound). Wider than the plan's own
# `TierRule.quantity_words` (a few: 4-5, several: 6-10, many: 11-30, numerous: 31-100), which the group prompt hands
# the model, because a model echoes that word or picks a neighbour of it.
DEFAULT_VAGUE: dict[str, tuple[int, int | None]] = {
    "a few": (2, 7), "few": (2, 7), "a couple of": (2, 3), "a couple": (2, 3), "a pair of": (2, 2), "pair of": (2, 2),
    "both": (2, 2), "twin": (2, 2), "a trio of": (3, 3), "several": (3, 15), "a handful of": (2, 8),
    "a small number of": (2, 8), "some": (2, None), "multiple": (2, None), "various": (2, None),
    "a variety of": (2, None), "a number of": (2, None), "a group of": (2, None), "a cluster of": (2, None),
    "a collection of": (2, None), "a row of": (2, None), "a line of": (2, None), "a fleet of": (3, None),
    "a series of": (2, None), "a set of": (2, None), "a queue of": (2, None), "a column of": (2, None),
    "a convoy of": (3, None), "a bunch of": (3, None), "groups of": (4, None), "clusters of": (4, None),
    "rows of": (4, None), "lines of": (4, None), "many": (5, None), "lots of": (4, None), "a lot of": (4, None),
    "plenty of": (4, None), "numerous": (6, None), "a host of": (5, None), "a large number of": (8, None),
    "a great number of": (8, None), "a great many": (8, None), "a multitude of": (8, None), "countless": (15, None),
    "scores of": (20, None), "dozens of": (12, None), "a dozen": (9, 15), "half a dozen": (4, 8),
    "a few dozen": (20, 80), "hundreds of": (60, None), "more than a hundred": (100, None),
    "over a hundred": (100, None), "more than one hundred": (100, None), "a hundred": (75, 125),
    "a single": (1, 1), "single": (1, 1), "one single": (1, 1), "a lone": (1, 1), "lone": (1, 1),
    "a solitary": (1, 1), "solitary": (1, 1), "only one": (1, 1), "just one": (1, 1), "the only": (1, 1),
    "one": (1, 1),
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class LengthBounds(_Model):
    """A tier text's length in characters (the merged description's with its markup)."""

    min_chars: int = Field(1, ge=0, le=100_000, description="Shorter texts fail the form check.")
    max_chars: int | None = Field(None, ge=1, le=1_000_000, description="Longer texts fail the form check (None: no cap).",
                                  json_schema_extra={"range": "[min_chars, 1000000] or null"})

    @model_validator(mode="after")
    def _ordered(self) -> "LengthBounds":
        if self.max_chars is not None and self.max_chars < self.min_chars:
            raise ValueError(f"max_chars ({self.max_chars}) is below min_chars ({self.min_chars})")
        return self


class TierLengths(_Model):
    """Length bounds per tier. The LMM schemas cap holistic at 800, tier sentences at 300 and the merge at 2,000
    characters; the template drafter's merge of a busy patch is longer, so the merge has no cap by default."""

    holistic: LengthBounds = LengthBounds(min_chars=20, max_chars=1200)
    instance: LengthBounds = LengthBounds(min_chars=8, max_chars=400)
    group: LengthBounds = LengthBounds(min_chars=8, max_chars=400)
    merge: LengthBounds = LengthBounds(min_chars=20, max_chars=None)


class VerifySettings(_Model):
    """What the text checks accept. `VerifySettings()` is the documented default."""

    checks: tuple[CheckName, ...] = Field(
        ALL_CHECKS, description="The checks run, by name: category, position, count, leakage, absent, form, merge.")
    synonyms: dict[str, list[str]] = Field(
        default_factory=dict, description="Category display word -> names added to its built-in names "
        "(pipeline/verification/synonyms.py); singular forms, plurals are derived.")
    synonym_overrides: dict[str, list[str]] = Field(
        default_factory=dict, description="Category display word -> names that replace its built-in names.")
    weak_names: tuple[str, ...] = Field(
        DEFAULT_WEAK, description="Names with an everyday meaning too (field, track, port): they may agree with a "
        "sentence's subject but never contradict it, and never assert that the patch holds such an object.")
    implied: dict[str, list[str]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_IMPLIED.items()},
        description="Category -> categories a holistic or merged text may name when the patch holds the first "
        "(a running track encloses a football pitch that iSAID may not annotate).")
    uncounted_names: tuple[str, ...] = Field(
        ("pier", "jetty", "dock", "quay", "wharf", "boat dock", "landing pier"),
        description="Names whose numbers count parts of one object (a harbour's piers; iSAID may annotate a harbour "
        "as one object or one per pier), so a holistic text's number of them is never checked.")
    require_category_mention: bool = Field(
        False, description="An instance or group text that names no category fails the category check. Off: the "
        "tag names the object in the merge, so an unnamed attribute list contradicts nothing.")
    position_tolerance: int = Field(
        0, ge=0, le=2, description="Instances and holistic texts: a position phrase may lie this many 3x3 cells "
        "(Chebyshev distance) from the cells the object occupies (its position word's cell, and with "
        "`position_extent` every cell its box reaches). 0 already accepts a neighbouring cell the object "
        "reaches into; 1 accepts every neighbour of the centroid's cell (then nothing said of a centred object fails).")
    group_position_tolerance: int = Field(
        0, ge=0, le=2, description="Groups: the same distance, from the group's cell (1x2, 2x1, 2x2 cells span "
        "several 3x3 cells), its position word's cell and its box's cells. Above 0, a half-image cell accepts "
        "every position.")
    position_extent: bool = Field(
        True, description="Count every 3x3 cell an object's (group's) box reaches as where it is, not only the "
        "cell of its centroid: a long bridge is rightly 'on the left' and 'in the middle'.")
    extent_margin: float = Field(
        0.03, ge=0, le=0.5, description="The box is grown by this fraction of the patch side before its cells are "
        "taken, so an object ending just short of a grid line may be described as in the next cell.")
    vague_counts: dict[str, tuple[Count, Count | None]] = Field(
        default_factory=dict, description="Quantity words -> (low, high or null) counts they may describe, added to "
        "or replacing the built-in table (settings.DEFAULT_VAGUE).")
    approx_tolerance: float = Field(
        0.25, ge=0, le=1, description="'about N', 'around N', 'roughly N' accept counts within this fraction of N "
        "(and at least N +/- 1).")
    lengths: TierLengths = Field(TierLengths(), description="Length bounds in characters per tier (holistic, "
                                 "instance, group, merge); out of them fails the form check.")
    truncation_min_words: int = Field(
        8, ge=1, le=1000, description="A text of at least this many words must end with final punctuation.")
    repeat_ngram: int = Field(
        12, ge=3, le=100, description="A run of this many words occurring twice in one tier text is a repetition "
        "(the merge is exempt: similar objects rightly get similar sentences).")
    loop_ngram: int = Field(
        3, ge=1, le=50, description="A run of this many words or more repeated three times back to back is a "
        "degenerate loop, in any text.")
    refusals: tuple[str, ...] = Field(
        ("i cannot", "i can't", "i can not", "i'm sorry", "i am sorry", "sorry,", "as an ai", "as a language model",
         "unable to determine", "i am unable", "i'm unable", "cannot be determined", "can't be determined",
         "not possible to determine", "impossible to determine", "i don't know", "i do not know",
         "i don't see", "i do not see", "i can't see", "i cannot see", "no object is marked", "no marked object",
         "there is no object marked", "there is no marked", "i'm not able", "i am not able", "hard to tell",
         "difficult to determine"),
        description="Lower-case phrases that make a reply a refusal rather than a description.")
    merge_keep_facts: bool = Field(
        True, description="The merge must keep, in the sentence of each tag, the exact count and a position agreeing "
        "with the ones its tier text stated (a merge that drops them fails; the assembly never does).")

    def lexicon(self) -> Lexicon:
        """The compiled names (cached by value, so building it per call costs a dictionary look-up)."""
        table = {k: tuple(v) for k, v in DEFAULT_SYNONYMS.items()}
        for k, v in self.synonym_overrides.items():
            table[k] = tuple(v)
        for k, v in self.synonyms.items():
            table[k] = table.get(k, ()) + tuple(v)
        return build_lexicon(tuple(sorted(table.items())), tuple(self.weak_names),
                             tuple(sorted((k, tuple(v)) for k, v in self.implied.items())))

    def vague(self) -> dict[str, tuple[int, int | None]]:
        return {**DEFAULT_VAGUE, **{k.lower(): tuple(v) for k, v in self.vague_counts.items()}}


DEFAULT_SETTINGS = VerifySettings()
