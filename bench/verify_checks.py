"""Benchmark: what the text checks (pipeline/verification/checks.py) catch, what they flag wrongly, what they cost.

Builds a labelled set over the plans of a small synthetic build and over constructed plans of all 15 iSAID
categories: correct sentences, and sentences with one injected error each (wrong category, wrong position, wrong
count, leaked mark number; for holistic texts a category the patch lacks, a wrong total, a wrong place; for merges a
wrong position, a wrong count, a dropped position, a wrong category of a tag; and unusable replies), written from
many VLM-like phrasings. This set is generated here and shares no sentence with the tests' data
(tests/pipeline/verification/data/sentences.yaml). Prints, per check, errors injected, caught and the detection
rate; correct sentences, flagged and the false-flag rate; then the time per record of `verify_texts` on the
template-drafted records of the build against the time to draft them and the time to plan the same patches.

Goals (issue "Verification: every drafted sentence is checked against the plan before it is kept"): at least 95%
of category, position, count and leakage errors caught; at most 5% of correct sentences flagged; verification
under 5% of a build's wall time (dominated by planning).

    python bench/verify_checks.py [--out bench/out/verify] [--scale small] [--seed 7]
"""

from __future__ import annotations

import argparse
import random
import shutil
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from annotations import template_drafter
from pipeline.contracts.categories import ISAID
from pipeline.contracts.gcg_schema import records_from_table
from pipeline.contracts.layout import plans_dir, records_dir
from pipeline.contracts.plan_schema import row_to_plan
from pipeline.contracts.records import Group, PatchPlan, PlannedObject, Window
from pipeline.drafting.stage import run_draft
from pipeline.release.dataset import write_dataset
from pipeline.synthetic.isaid import generate
from pipeline.synthetic.tiny_build import tiny_build
from pipeline.verification.records import validate_records
from pipeline.verification.checks import grid_cells, group_subject, instance_subject, verify_record, verify_texts
from pipeline.verification.settings import DEFAULT_SETTINGS
from pipeline.verification.stage import VerificationConfig, draft_verifier
from pipeline.verification.text_facts import clear_cache

WORDS = (("top left", "top", "top right"), ("left", "center", "right"), ("bottom left", "bottom", "bottom right"))
CELL = {w: (r, c) for r, row in enumerate(WORDS) for c, w in enumerate(row)}

# ------------------------------------------------------------------------------------------- vocabulary

NAMES = {  # how a model names each category (singular, plural)
    "plane": [("airliner", "airliners"), ("passenger jet", "passenger jets"), ("aircraft", "aircraft"),
              ("airplane", "airplanes"), ("jet", "jets"), ("plane", "planes"), ("aeroplane", "aeroplanes")],
    "helicopter": [("helicopter", "helicopters"), ("chopper", "choppers"), ("rotorcraft", "rotorcraft")],
    "ship": [("boat", "boats"), ("vessel", "vessels"), ("ship", "ships"), ("yacht", "yachts"),
             ("motorboat", "motorboats"), ("cargo ship", "cargo ships")],
    "storage tank": [("storage tank", "storage tanks"), ("oil tank", "oil tanks"), ("silo", "silos"),
                     ("fuel tank", "fuel tanks"), ("tank", "tanks")],
    "baseball diamond": [("baseball diamond", "baseball diamonds"), ("baseball field", "baseball fields"),
                         ("ballpark", "ballparks")],
    "tennis court": [("tennis court", "tennis courts"), ("court", "courts"), ("hard court", "hard courts")],
    "basketball court": [("basketball court", "basketball courts"), ("court", "courts")],
    "ground track field": [("running track", "running tracks"), ("athletics track", "athletics tracks"),
                           ("ground track field", "ground track fields"), ("track and field stadium", "track and field stadiums")],
    "bridge": [("bridge", "bridges"), ("overpass", "overpasses"), ("viaduct", "viaducts"), ("footbridge", "footbridges")],
    "large vehicle": [("truck", "trucks"), ("lorry", "lorries"), ("bus", "buses"), ("trailer", "trailers"),
                      ("semi-trailer", "semi-trailers"), ("large vehicle", "large vehicles")],
    "small vehicle": [("car", "cars"), ("sedan", "sedans"), ("vehicle", "vehicles"), ("van", "vans"),
                      ("small vehicle", "small vehicles"), ("SUV", "SUVs")],
    "swimming pool": [("swimming pool", "swimming pools"), ("pool", "pools")],
    "roundabout": [("roundabout", "roundabouts"), ("traffic circle", "traffic circles")],
    "soccer ball field": [("soccer field", "soccer fields"), ("football pitch", "football pitches"),
                          ("soccer pitch", "soccer pitches"), ("football field", "football fields")],
    "harbor": [("harbor", "harbors"), ("harbour", "harbours"), ("marina", "marinas"), ("pier", "piers"),
               ("jetty", "jetties")],
}
ADJ = {
    "plane": ["white", "silver", "large", "twin-engine", "wide-body", "grey"],
    "helicopter": ["dark green", "white", "military", "small", "red and white"],
    "ship": ["white", "small", "grey", "red-hulled", "sleek", "large"],
    "storage tank": ["white", "cylindrical", "round", "large", "silver"],
    "baseball diamond": ["fan-shaped", "well-kept", "grassy"],
    "tennis court": ["green", "blue", "red clay", "rectangular"],
    "basketball court": ["outdoor", "blue", "orange", "grey"],
    "ground track field": ["oval", "red", "large", "reddish-brown"],
    "bridge": ["long", "concrete", "narrow", "multi-lane", "steel"],
    "large vehicle": ["white", "long", "articulated", "heavy", "red"],
    "small vehicle": ["white", "dark", "silver", "red", "black", "blue"],
    "swimming pool": ["rectangular", "kidney-shaped", "turquoise", "small"],
    "roundabout": ["large", "circular", "busy", "small"],
    "soccer ball field": ["green", "well-maintained", "rectangular", "full-size"],
    "harbor": ["busy", "small", "long", "L-shaped"],
}
DESC = {
    "plane": ["with swept-back wings", "with a long fuselage", "with engines under its wings", "with a blue tail fin"],
    "helicopter": ["with four rotor blades", "with a long tail boom", "with its rotors at rest"],
    "ship": ["with a pointed bow", "with a flat deck", "leaving a faint wake"],
    "storage tank": ["with a flat roof", "with a domed top", "casting a round shadow"],
    "baseball diamond": ["with a brown dirt infield", "with green outfield grass", "with a clearly marked infield"],
    "tennis court": ["with white boundary lines", "with a net across its width", "marked with white lines"],
    "basketball court": ["with white markings", "with a hoop at each end", "with painted key areas"],
    "ground track field": ["with several running lanes", "enclosing a green infield", "surrounding a grass pitch"],
    "bridge": ["spanning the river", "carrying a busy road", "crossing the canal"],
    "large vehicle": ["with a long trailer", "with a boxy cargo body", "hauling a container"],
    "small vehicle": ["with a dark roof", "with tinted windows", "with a light roof"],
    "swimming pool": ["filled with clear water", "surrounded by a paved deck", "with light blue tiles"],
    "roundabout": ["with a landscaped central island", "with four entry roads", "with a grassy centre"],
    "soccer ball field": ["with white markings", "with goalposts at both ends", "with a centre circle"],
    "harbor": ["with several piers", "with boats moored alongside", "extending into the water"],
}
VERB = {"plane": ["is parked", "sits", "stands"], "helicopter": ["is parked", "sits", "rests"],
        "ship": ["is moored", "is docked", "floats"], "large vehicle": ["is parked", "sits", "waits"],
        "small vehicle": ["is parked", "sits"], "bridge": ["is located", "lies"], "harbor": ["is located", "lies"]}
VERB_PL = {"plane": ["are parked", "are lined up", "sit"], "helicopter": ["are parked", "sit"],
           "ship": ["are moored", "are docked", "are anchored"], "large vehicle": ["are parked", "are lined up", "wait"],
           "small vehicle": ["are parked", "are lined up", "are clustered"], "storage tank": ["stand", "are arranged", "are clustered"],
           "swimming pool": ["are visible", "are scattered", "can be seen"]}
RELATIONS = ["next to a parking lot", "beside a tree-lined road", "near a large building", "close to the shoreline",
             "surrounded by grass", "alongside a paved path", "by a row of trees", "near some warehouses"]
ATTACHED = ["next to a road on the {far} side", "beside a building at the {far}", "near a parking lot on the {far} side"]
# what else models write into a sentence: relative places, orientations, directions, parts (none is where it is)
DISTRACTORS = ["to the left of a large building", "just to the right of the main road", "to the right of the parking lot",
               "oriented from the top left to the bottom right", "running diagonally from the lower left to the upper right",
               "facing the top right", "heading towards the left", "aligned from the upper left to the lower right",
               "with the road on its left", "in the middle of a paved area", "at the edge of a green lawn"]
PARTS = {"plane": ["with its left wing partly in shadow", "its nose pointing toward the bottom left"],
         "tennis court": ["with a net across the middle"], "roundabout": ["with a green island in the middle"],
         "ground track field": ["with a soccer field in the middle"], "bridge": ["with a pillar at the center of the span"],
         "harbor": ["with boats moored along its right side"], "baseball diamond": ["with a pitcher's mound at the center"]}

CORNER = ["in the {v}-{h} corner", "at the {v} {h} of the image", "in the {vv} {h}", "in the {vv}-{h} part of the picture",
          "toward the {compass} corner", "near the {v} {h} corner of the scene", "in the {v} {h} region"]
EDGE = {"top": ["at the top", "near the top edge", "in the upper part of the image", "along the top of the scene",
                "at the top centre", "in the upper middle of the picture"],
        "bottom": ["at the bottom", "near the bottom edge", "in the lower part of the image", "along the bottom of the scene",
                   "at the bottom center", "in the lower middle of the image"],
        "left": ["on the left side", "along the left edge", "in the middle of the left side", "on the left-hand side of the image",
                 "at the left", "in the center-left of the picture"],
        "right": ["on the right side", "along the right edge", "in the middle of the right side", "on the right-hand side of the image",
                  "at the right", "in the centre-right of the frame"],
        "center": ["in the center", "in the middle of the image", "at the centre of the scene", "in the central part of the picture",
                   "near the middle", "right in the middle of the frame"]}
COMPASS = {("top", "left"): "northwest", ("top", "right"): "northeast", ("bottom", "left"): "southwest",
           ("bottom", "right"): "southeast"}
VV = {"top": "upper", "bottom": "lower"}
HALF = {"left": ["in the left half of the image", "across the left half", "on the western side", "on the left side"],
        "right": ["in the right half of the image", "across the right half", "on the eastern side", "on the right side"],
        "top": ["in the upper half", "across the top half of the image", "in the northern part", "along the top"],
        "bottom": ["in the lower half", "across the bottom half of the image", "in the southern part", "along the bottom"]}
WHOLE = ["across the image", "throughout the scene", "scattered around the image", "all over the picture"]
NUMBER_WORDS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen " \
               "seventeen eighteen nineteen twenty".split()
LEAKS = ["marked {k}", "labelled {k}", "(number {k})", "with the label {k}", "tagged #{k}", "[{k}]", "- object {k} -",
         "marked with the number {k}", "labeled as number {k}", "mark {k}"]
REFUSALS = ["I'm sorry, I cannot identify the marked object in this image.",
            "As an AI model, I am unable to determine the attributes of the object.",
            "I cannot see any object marked with that number.", "Sorry, it is not possible to determine what is marked."]

# ------------------------------------------------------------------------------------------------ plans


def cell_phrase(rng: random.Random, word: str) -> str:
    """A VLM's words for a 3x3 cell."""
    if word in ("top left", "top right", "bottom left", "bottom right"):
        v, h = word.split()
        return rng.choice(CORNER).format(v=v, h=h, vv=VV[v], compass=COMPASS[(v, h)])
    return rng.choice(EDGE[word])


def phrase_cells(phrase: str, word: str) -> frozenset[tuple[int, int]]:
    """The cells a generated phrase names (band phrases name their whole row or column)."""
    r, c = CELL[word]
    if word in ("top", "bottom") and not any(k in phrase for k in ("centre", "center", "middle")):
        return frozenset((r, j) for j in range(3))
    if word in ("left", "right") and not any(k in phrase for k in ("middle", "center", "centre")):
        return frozenset((i, c) for i in range(3))
    return frozenset({(r, c)})


def far_word(word: str) -> str:
    r, c = CELL[word]
    return WORDS[2 - r][2 - c] if (r, c) != (1, 1) else "top left"


def number(rng: random.Random, n: int) -> str:
    return NUMBER_WORDS[n] if n <= 20 and rng.random() < 0.6 else str(n)


def vague(rng: random.Random, n: int) -> str:
    """A quantity word a model may use for n."""
    if n <= 3:
        return rng.choice([number(rng, n), "a couple of" if n == 2 else number(rng, n)])
    if n <= 5:
        return rng.choice(["a few", "a handful of", number(rng, n), f"about {n}"])
    if n <= 10:
        return rng.choice(["several", f"roughly {n}", number(rng, n), "a number of"])
    if n <= 30:
        return rng.choice(["many", f"around {n}", "numerous", "a large number of" if n >= 12 else "many"])
    if n <= 100:
        return rng.choice(["numerous", "dozens of", f"approximately {n}", "many"])
    return rng.choice(["more than a hundred", "hundreds of", "over 100"])


def wrong_count(rng: random.Random, n: int) -> str:
    """A quantity that does not admit n."""
    if n == 1:
        return rng.choice(["several", "two", "a few", "three", "many", "a pair of"])
    if n <= 3:
        return rng.choice([number(rng, n + 3), "dozens of", "numerous", "many", number(rng, 2 * n + 4)])
    if n <= 10:
        return rng.choice([number(rng, 2 * n + 3), "a single", "dozens of", "hundreds of", number(rng, 1) if n > 3 else "twenty"])
    return rng.choice(["a couple of", "two", "three", "a few", "a single", number(rng, max(1, n // 4))])


def plain_names(cat: str) -> list[tuple[str, str]]:
    """The names that name `cat` alone and are counted (not "vehicle" for a truck, not a harbour's "piers"): an
    error injected with them is an error whatever else the patch holds."""
    lex = DEFAULT_SETTINGS.lexicon()
    names = [nm for nm in NAMES[cat] if lex.categories_named(nm[0]) == {cat} and nm[0] not in DEFAULT_SETTINGS.uncounted_names]
    return names or NAMES[cat]


def other_category(rng: random.Random, cat: str) -> str:
    """A category none of whose names may name `cat` (so naming it is an unambiguous error)."""
    lex = DEFAULT_SETTINGS.lexicon()
    cats = [c for c in NAMES if c != cat and all(cat not in lex.categories_named(s) for s, _ in NAMES[c])]
    return rng.choice(cats)


# ------------------------------------------------------------------------------------------- sentences

@dataclass
class Item:
    kind: str  # instance | group | holistic | merge
    check: str | None  # the injected error's check; None for a correct text
    plan: PatchPlan
    holistic: str | None = None
    instances: dict = field(default_factory=dict)
    groups: dict = field(default_factory=dict)
    description: str | None = None
    note: str = ""  # e.g. the injected position's distance


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def instance_sentence(rng: random.Random, cat: str, pos: str | None, name: str | None = None, plural: bool = False,
                      quantity: str | None = None, leak: str | None = None) -> str:
    """One VLM-like instance sentence: attributes, a name of the category, a place (or none), maybe a relation."""
    sing, plur = rng.choice(NAMES[cat])
    noun = name or (plur if plural else sing)
    adj, desc = rng.choice(ADJ[cat]), rng.choice(DESC[cat])
    verb = rng.choice(VERB.get(cat, ["is located", "lies", "sits", "is situated"]))
    if plural:
        verb = rng.choice(VERB_PL.get(cat, ["are located", "lie", "sit side by side"]))
    rel = rng.choice(RELATIONS + [""] * 4)
    where = cell_phrase(rng, pos) if pos else ""
    det = (quantity + " ") if quantity else ("" if plural else rng.choice(["A ", "The ", "This "]))
    np = f"{det}{adj} {noun}"
    if leak:
        np = f"{np} {leak}"
    forms = [
        f"{np} {verb} {where}, {desc}.",
        f"{_cap(where)}, {np[0].lower() + np[1:] if det in ('A ', 'The ', 'This ') else np} {desc} {verb.split()[-1] if plural else 'can be seen'}.",
        f"{np} {desc} {verb} {where} {rel}.",
        f"{np}, {desc}, {verb} {where}.",
        f"Located {where}, {np[0].lower() + np[1:] if det else np} appears well defined {desc}.",
        f"{np} {verb} {where} {rel}, {desc}.",
    ]
    if not where:
        forms = [f"{np} {desc} {rel}.", f"{np}, {desc}, is clearly visible.", f"{np} {verb} {rel}, {desc}."]
    text = rng.choice(forms)
    text = _distract(rng, text, cat, pos)
    text = " ".join(text.split()).replace(" ,", ",").replace(" .", ".")
    return _cap(text)


def _distract(rng: random.Random, text: str, cat: str, pos: str | None) -> str:
    """Half the time, add what models add: a relative place, an orientation, a direction, a part's place, a
    neighbour of another category, or a relation whose place is somewhere else."""
    if rng.random() < 0.5:
        return text
    extra = rng.choice([*DISTRACTORS, *PARTS.get(cat, []), "near {other}", "next to {other}",
                        rng.choice(ATTACHED).format(far=far_word(pos or "center").replace("center", "left"))])
    if "{other}" in extra:
        o = rng.choice([c for c in NAMES if c != cat])
        sing, plur = rng.choice(NAMES[o])
        extra = extra.format(other=rng.choice([_a(sing), f"two {plur}", f"several {plur}", f"a {rng.choice(ADJ[o])} {sing}"]))
    return text.rstrip(".") + ", " + extra + "."


def group_sentence(rng: random.Random, cat: str, count: int, where: str, quantity: str | None = None,
                   name: str | None = None, singular: bool | None = None, leak: str | None = None) -> str:
    sing, plur = rng.choice(NAMES[cat])
    one = count == 1 if singular is None else singular
    noun = name or (sing if one else plur)
    adj = rng.choice(ADJ[cat])
    if one:
        q = quantity or rng.choice(["A single", "One", "A lone", "A"])
        verb = rng.choice(VERB.get(cat, ["is visible", "sits", "is located"]))
        forms = [f"{q} {adj} {noun} {verb} {where}.", f"{_cap(where)}, {q.lower()} {adj} {noun} {verb}.",
                 f"{q} {noun}, {adj} in colour, {verb} {where} {rng.choice(RELATIONS)}."]
    else:
        q = quantity or vague(rng, count)
        verb = rng.choice(VERB_PL.get(cat, ["are visible", "are located", "sit"]))
        forms = [f"{_cap(q)} {adj} {noun} {verb} {where}.",
                 f"{_cap(where)}, {q} {noun} {verb} {rng.choice(RELATIONS)}.",
                 f"There are {q} {noun} {where}, mostly {adj}.",
                 f"{_cap(q)} {noun}, mostly {adj}, {verb} {where} {rng.choice(RELATIONS)}.",
                 f"The image shows {q} {adj} {noun} {where}."]
    text = _distract(rng, rng.choice(forms), cat, None)
    if leak:
        text = text.replace(f" {noun}", f" {noun} {leak}", 1)
    return _cap(" ".join(text.split()).replace(" ,", ",").replace(" .", "."))


def group_where(rng: random.Random, g: Group) -> tuple[str, frozenset]:
    """A phrase for where a group is (its cell or its position word) and the cells it names."""
    if g.cell == "whole image":
        if rng.random() < 0.5:
            return rng.choice(WHOLE), frozenset()
        p = cell_phrase(rng, g.position)
        return p, phrase_cells(p, g.position)
    if g.grid in ("1x2", "2x1") and rng.random() < 0.6:
        return rng.choice(HALF[g.cell]), frozenset()
    word = g.cell if g.grid in ("2x2", "3x3") else g.position
    p = cell_phrase(rng, word)
    return p, phrase_cells(p, word)


def wrong_where(rng: random.Random, accepted: frozenset, tolerance: int) -> tuple[str, int] | None:
    """A phrase for a cell (or band) farther than `tolerance` from every accepted cell, and its distance."""
    options = []
    for word, (r, c) in CELL.items():
        for _ in range(3):
            p = cell_phrase(rng, word)
            cells = phrase_cells(p, word)
            d = min(max(abs(a - x), abs(b - y)) for a, b in cells for x, y in accepted)
            if d > tolerance:
                options.append((p, d))
    return rng.choice(options) if options else None


def leak_phrase(rng: random.Random, k: int) -> str:
    return rng.choice(LEAKS).format(k=k)


def instance_items(rng: random.Random, plan: PatchPlan, o: PlannedObject) -> list[Item]:
    s = DEFAULT_SETTINGS
    subject = instance_subject(o, plan, s)
    one = lambda text, check, note="": Item("instance", check, plan, instances={o.tag: text}, note=note)  # noqa: E731
    out = [one(instance_sentence(rng, o.category, o.position if rng.random() < 0.8 else None), None)]
    other = other_category(rng, o.category)
    out.append(one(instance_sentence(rng, other, o.position, name=rng.choice(NAMES[other])[0]), "category"))
    wrong = wrong_where(rng, subject.cells, subject.tolerance)
    if wrong:
        phrase, d = wrong
        text = instance_sentence(rng, o.category, "center")  # a frame to put the wrong phrase into
        for k in EDGE["center"]:
            text = text.replace(k, phrase) if k in text else text
        if phrase not in text:
            text = text.rstrip(".") + f", {phrase}."
        out.append(one(text, "position", f"distance {d}"))
    out.append(one(instance_sentence(rng, o.category, o.position, plural=True,
                                     quantity=rng.choice(["Two", "Several", "A pair of", "Three", "A few"])), "count"))
    out.append(one(instance_sentence(rng, o.category, o.position, leak=leak_phrase(rng, o.mark or 1)), "leakage"))
    return out


def group_items(rng: random.Random, plan: PatchPlan, g: Group) -> list[Item]:
    s = DEFAULT_SETTINGS
    subject = group_subject(g, plan, s)
    one = lambda text, check, note="": Item("group", check, plan, groups={g.tag: text}, note=note)  # noqa: E731
    where, _ = group_where(rng, g)
    out = [one(group_sentence(rng, g.category, g.count, where), None)]
    other = other_category(rng, g.category)
    out.append(one(group_sentence(rng, other, g.count, where, name=rng.choice(NAMES[other])[0 if g.count == 1 else 1]),
                   "category"))
    wrong = wrong_where(rng, subject.cells, subject.tolerance)
    if wrong:
        out.append(one(group_sentence(rng, g.category, g.count, wrong[0]), "position", f"distance {wrong[1]}"))
    if g.count == 1:
        bad = group_sentence(rng, g.category, g.count, where, singular=False, quantity=wrong_count(rng, 1))
    elif rng.random() < 0.25:
        bad = group_sentence(rng, g.category, g.count, where, singular=True, quantity=rng.choice(["A", "A single", "One"]))
    else:
        bad = group_sentence(rng, g.category, g.count, where, quantity=wrong_count(rng, g.count))
    out.append(one(bad, "count"))
    out.append(one(group_sentence(rng, g.category, g.count, where, leak=leak_phrase(rng, rng.randint(1, 20))), "leakage"))
    return out


SETTINGS = ["This aerial image shows {scene}.", "The image is a top-down view of {scene}.",
            "An overhead photograph of {scene}.", "This satellite picture captures {scene}."]
SCENES = ["an urban area", "a suburban neighbourhood", "a coastal district", "an industrial zone", "a mixed-use area"]


def holistic_items(rng: random.Random, plan: PatchPlan) -> list[Item]:
    by_cat: dict[str, list[PlannedObject]] = defaultdict(list)
    for o in plan.objects:
        by_cat[o.category].append(o)
    if not by_cat:
        return []

    def about(cat: str, n_said: str, where: str, plural: bool, exact: bool = False) -> str:
        sing, plur = rng.choice(plain_names(cat) if exact else NAMES[cat])
        noun = plur if plural else sing
        verb = rng.choice(VERB_PL.get(cat, ["are located", "lie"]) if plural else VERB.get(cat, ["is located", "lies"]))
        forms = [f"{_cap(n_said)} {noun} {verb} {where}.", f"The scene contains {n_said} {noun} {where}."]
        if where:
            forms.append(f"{_cap(where)}, there {'are' if plural else 'is'} {n_said} {noun}.")
        return " ".join(rng.choice(forms).split()).replace(" .", ".")

    def sentences(skip: str | None = None) -> list[str]:
        out = [rng.choice(SETTINGS).format(scene=rng.choice(SCENES))]
        for cat in rng.sample(sorted(by_cat), min(3, len(by_cat))):
            if cat == skip:
                continue
            objs = by_cat[cat]
            n = len(objs)
            where = cell_phrase(rng, rng.choice(objs).position) if rng.random() < 0.7 else ""
            said = (_a(rng.choice(ADJ[cat])) if n == 1 else vague(rng, n))
            out.append(about(cat, said, where, n > 1))
        return out

    def negation() -> str:
        gone = [c for c in NAMES if c not in by_cat]
        if not gone:
            return ""
        c = rng.choice(gone)
        plur = rng.choice(NAMES[c])[1]
        return rng.choice([f"No {plur} are visible.", f"There are no {plur} in the scene.",
                           f"The area is free of {plur}.", f"I do not see any {plur}." if False else f"Notably, it has no {plur}."])

    first = sentences()
    if rng.random() < 0.5:
        first.append(negation())
    items = [Item("holistic", None, plan, holistic=" ".join(x for x in first if x))]
    absent = [c for c in NAMES if c not in by_cat and all(c not in DEFAULT_SETTINGS.implied.get(p, ()) for p in by_cat)]
    absent = [c for c in absent if not any(c in DEFAULT_SETTINGS.lexicon().categories_named(s) and
                                           any(k in by_cat for k in DEFAULT_SETTINGS.lexicon().categories_named(s))
                                           for s, _ in NAMES[c])]
    if absent:
        cat = rng.choice(absent)
        base = sentences()
        base.insert(rng.randint(1, len(base)), about(cat, _a(rng.choice(ADJ[cat])), cell_phrase(rng, "center"), False))
        items.append(Item("holistic", "absent", plan, holistic=" ".join(base)))
    cat = rng.choice(sorted(by_cat))
    n = len(by_cat[cat])
    bad = rng.choice([number(rng, 2 * n + 3), number(rng, n + 4)])
    sing, plur = rng.choice(plain_names(cat))
    base = sentences(skip=cat)
    base.insert(1, f"{rng.choice(['In total there are', 'The image contains', 'Altogether, the scene holds'])} {bad} {plur}.")
    items.append(Item("holistic", "count", plan, holistic=" ".join(base)))
    scene_cells = set()
    s = DEFAULT_SETTINGS
    for o in by_cat[cat]:
        scene_cells |= instance_subject(o, plan, s).cells
    wrong = wrong_where(rng, frozenset(scene_cells), s.position_tolerance)
    if wrong:
        base = sentences(skip=cat)
        base.insert(1, about(cat, _a(rng.choice(ADJ[cat])) if n == 1 else vague(rng, n), wrong[0], n > 1, exact=True))
        items.append(Item("holistic", "position", plan, holistic=" ".join(base), note=f"distance {wrong[1]}"))
    return items


def merge_items(rng: random.Random, plan: PatchPlan) -> list[Item]:
    """A merge of generated tier texts in an LLM's words, correct and with one injected error."""
    s = DEFAULT_SETTINGS
    insts = [o for o in plan.instances if o.tag][:4]
    groups = plan.groups[:3]
    if not insts and not groups:
        return []
    hol = rng.choice(SETTINGS).format(scene=rng.choice(SCENES))
    tier_i, tier_g, cells = {}, {}, {}
    for o in insts:
        tier_i[o.tag] = instance_sentence(rng, o.category, o.position).replace("  ", " ")
        cells[o.tag] = o.position
    said: dict[str, str] = {}
    for g in groups:
        word = g.cell if g.grid in ("2x2", "3x3") else g.position
        if g.cell == "whole image":
            word = g.position
        said[g.tag] = vague(rng, g.count) if g.count > 1 else "a single"
        tier_g[g.tag] = group_sentence(rng, g.category, g.count, cell_phrase(rng, word),
                                       quantity=said[g.tag] if g.count > 1 else "A single")
        cells[g.tag] = word

    def clause(tag: str, where: str | None, count: str | None = None, name: str | None = None) -> str:
        if tag in tier_i:
            o = next(x for x in insts if x.tag == tag)
            adj = rng.choice(ADJ[o.category])
            head = f"{_a(adj)} <p> {tag} </p> [SEG]" if name is None else f"the <p> {tag} </p> [SEG], {_a(name)},"
            verb = rng.choice(VERB.get(o.category, ["is located", "lies"]))
        else:
            g = next(x for x in groups if x.tag == tag)
            head = f"{count or said[tag]} <p> {tag} </p> [SEG]"
            verb = rng.choice(VERB_PL.get(g.category, ["are located"])) if g.count > 1 else "is visible"
        return f"{head} {verb}{' ' + where if where else ''}"

    def merged(overrides: dict) -> str:
        parts = [hol]
        for tag in [*tier_i, *tier_g]:
            where = overrides.get(("where", tag), "default")
            where = cell_phrase(rng, cells[tag]) if where == "default" else where
            parts.append(_cap(clause(tag, where, overrides.get(("count", tag)), overrides.get(("name", tag)))) + ".")
        return " ".join(parts)

    def item(check: str | None, overrides: dict, note: str = "") -> Item:
        return Item("merge", check, plan, holistic=hol, instances=tier_i, groups=tier_g, description=merged(overrides),
                    note=note)

    out = [item(None, {})]
    tag = rng.choice([*tier_i, *tier_g])
    subj = (instance_subject(next(o for o in insts if o.tag == tag), plan, s) if tag in tier_i
            else group_subject(next(g for g in groups if g.tag == tag), plan, s))
    wrong = wrong_where(rng, subj.cells, subj.tolerance)
    if wrong:
        out.append(item("merge", {("where", tag): wrong[0]}, f"distance {wrong[1]}"))
    if tier_g:
        gt = rng.choice(list(tier_g))
        g = next(x for x in groups if x.tag == gt)
        out.append(item("merge", {("count", gt): wrong_count(rng, g.count)}, "count"))
    out.append(item("merge", {("where", tag): None}, "dropped position"))
    if tier_i:
        it = rng.choice(list(tier_i))
        o = next(x for x in insts if x.tag == it)
        out.append(item("merge", {("name", it): rng.choice(NAMES[other_category(rng, o.category)])[0]}, "category"))
    return out


def form_items(rng: random.Random, plan: PatchPlan) -> list[Item]:
    o = next((x for x in plan.instances if x.tag), None)
    if o is None:
        return []
    good = instance_sentence(rng, o.category, o.position)
    words = good.rstrip(".").split()
    broken = rng.choice([
        " ".join(words[:max(5, len(words) - 3)]) + rng.choice([" the", " with", " and", " of", ","]),
        rng.choice(REFUSALS),
        good + " " + good,
        good.rstrip(".") + " " + " ".join([words[-1]] * 1) + (" " + " ".join(words[-3:])) * 3 + ".",
        "",
    ])
    return [Item("instance", "form", plan, instances={o.tag: broken})]


# -------------------------------------------------------------------------------------- constructed plans

def constructed_plans(rng: random.Random, n: int) -> list[PatchPlan]:
    """Plans holding one marked instance of each instance-capable category and one group of a random category."""
    plans = []
    cats = [c.display for c in ISAID.categories]
    for k in range(n):
        objs, groups = [], []
        for j, cat in enumerate(rng.sample(cats, 4)):
            word = rng.choice([w for row in WORDS for w in row])
            r, c = CELL[word]
            side = rng.choice([40, 80, 140])
            x = (c + 0.5) * 800 / 3 - side / 2 + rng.uniform(-40, 40)
            y = (r + 0.5) * 800 / 3 - side / 2 + rng.uniform(-40, 40)
            cid = next(cc.id for cc in ISAID.categories if cc.display == cat)
            o = PlannedObject(j + 1, cid, cat, {"size": [800, 800], "counts": ""}, (x, y, side, side), side * side,
                              (x + side / 2, y + side / 2), word, "medium", side * side / 640000, None, None, 1.0, False,
                              "instance", j + 1, f"{cat}-1")
            objs.append(o)
        cat = rng.choice(cats)
        cid = next(cc.id for cc in ISAID.categories if cc.display == cat)
        grid = rng.choice(["1x1", "1x2", "2x1", "2x2", "3x3"])
        cell = {"1x1": ["whole image"], "1x2": ["left", "right"], "2x1": ["top", "bottom"],
                "2x2": ["top left", "top right", "bottom left", "bottom right"],
                "3x3": [w for row in WORDS for w in row]}[grid]
        cell = rng.choice(cell)
        inside = [WORDS[r][c] for r, c in sorted(grid_cells(grid, cell))]
        pos = rng.choice(inside)
        count = rng.choice([1, 2, 3, 5, 8, 14, 40, 120])
        r, c = CELL.get(pos, (1, 1))
        box = ((c + 0.5) * 800 / 3 - 60, (r + 0.5) * 800 / 3 - 60, 120, 120)
        members = []
        for m in range(count):
            members.append(PlannedObject(100 + m, cid, cat, {"size": [800, 800], "counts": ""}, box, 100, (box[0] + 60, box[1] + 60),
                                         pos, "small", 0.0002, None, None, 1.0, False, "group", group_id=1))
        plural = ISAID[cid].plural
        groups.append(Group(1, f"{plural}-1", cid, cat, grid, cell, pos, count, "", [m.object_id for m in members],
                            {"size": [800, 800], "counts": ""}, box, 14400))
        plans.append(PatchPlan(f"C{k:04d}", "val", f"C{k:04d}", k, "", Window(0, 0, 800, 800), 800, 800, None, None, None,
                               objs + members, groups, [], "constructed"))
    return plans


# ------------------------------------------------------------------------------------------------- main

def _verify_stage(out: Path) -> None:
    """The verify stage on the drafted split, when this checkout has it (pipeline/verification/stage.py)."""
    from pipeline.verification.stage import run_verify

    run_verify(out, "val", progress=False)


def _flow_build(data: Path, out: Path, verify: bool) -> float:
    """Seconds of one whole build through the flow in this process (`geopixeld build`), the build's defaults but
    for verification on or off; the split test, planned from the synthetic val folder."""
    from flows.in_process import run_build
    from flows.params import BuildParams

    shutil.rmtree(out, ignore_errors=True)
    params = BuildParams.model_validate({"source": {"root": str(data)}, "output": {"out": str(out)}, "splits": ["test"],
                                         "progress": False, "verification": {"enabled": verify}})
    t0 = time.perf_counter()
    run_build(params)
    return time.perf_counter() - t0


def caught(item: Item) -> tuple[bool, list]:
    failures = verify_texts(item.plan, item.holistic, item.instances, item.groups, item.description)
    if item.check is None:
        return bool(failures), failures
    return any(f.check == item.check for f in failures), failures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench/out/verify"))
    ap.add_argument("--scale", default="small")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--constructed", type=int, default=120, help="Constructed plans added to the build's.")
    ap.add_argument("--show", type=int, default=0, help="Print this many misses and false flags.")
    ap.add_argument("--flow-rounds", type=int, default=2, help="Whole builds through the flow, verification on and "
                    "off in turn, this many of each (0: none).")
    args = ap.parse_args()
    rng = random.Random(args.seed)

    data = args.out / "data"
    if not (data / "val" / "Annotations").is_dir():
        generate(data, scale=args.scale, seed=0, splits=("val",), progress=False)
    shutil.rmtree(args.out / "out", ignore_errors=True)
    t0 = time.perf_counter()
    out = tiny_build(args.out, scale=args.scale, splits=("val",), source=data, draft=False)
    plan_s = time.perf_counter() - t0
    plans = [row_to_plan(r) for f in sorted(plans_dir(out, "val").glob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    t0 = time.perf_counter()
    run_draft(out, "val", progress=False)
    stage_s = time.perf_counter() - t0
    records = {r.patch_id: r for f in sorted(records_dir(out, "val").glob("*.parquet"))
               for r in records_from_table(pq.read_table(f))}
    in_draft_s = float("inf")
    for _ in range(3):  # the drafting stage with the checks inside it, as a build runs them (best of 3, as below)
        shutil.rmtree(records_dir(out, "val"))
        clear_cache()
        t0 = time.perf_counter()
        run_draft(out, "val", progress=False, verify=draft_verifier(VerificationConfig()))
        in_draft_s = min(in_draft_s, time.perf_counter() - t0)
    shutil.rmtree(records_dir(out, "val"))
    run_draft(out, "val", progress=False)
    stages = {"plan": plan_s, "draft": stage_s}
    for name, run in (("verify stage", lambda: _verify_stage(out)), ("validate", lambda: validate_records(out, "val")),
                      ("release", lambda: write_dataset(out, ["val"]))):
        t0 = time.perf_counter()
        try:
            run()
            stages[name] = time.perf_counter() - t0
        except Exception as exc:  # noqa: BLE001 - a stage other sessions are changing: report, do not fail
            print(f"({name} not timed: {type(exc).__name__}: {exc})")

    # time: the drafting function, the drafting stage, verification of the drafted records (best of 3)
    n = len(plans)
    t0 = time.perf_counter()
    for p in plans:
        template_drafter.draft(p, ISAID)
    draft_s = time.perf_counter() - t0
    best = float("inf")
    template_failures: list = []
    for _ in range(3):
        clear_cache()  # cold: every record's sentences parsed anew (within a run, repeated sentences are remembered)
        t0 = time.perf_counter()
        found = [verify_record(p, records[p.patch_id]) for p in plans]
        best = min(best, time.perf_counter() - t0)
        template_failures = [f for fs in found for f in fs]

    # the labelled set
    items: list[Item] = []
    for p in plans + constructed_plans(rng, args.constructed):
        for o in p.instances:
            if o.tag:
                items += instance_items(rng, p, o)
        for g in p.groups:
            items += group_items(rng, p, g)
        items += holistic_items(rng, p)
        items += merge_items(rng, p)
        items += form_items(rng, p)
    clear_cache()
    t0 = time.perf_counter()
    results = [(it, *caught(it)) for it in items]
    label_s = time.perf_counter() - t0

    rows: dict[tuple[str, str], Counter] = defaultdict(Counter)
    misses, false_flags = [], []
    for it, hit, failures in results:
        key = (it.check or "correct", it.kind)
        rows[key]["n"] += 1
        rows[key]["hit"] += hit
        if it.check and not hit:
            misses.append((it, failures))
        if it.check is None and hit:
            false_flags.append((it, failures))
        if it.check == "position" or (it.kind == "merge" and it.note.startswith("distance")):
            rows[(f"{it.check} ({it.note})", it.kind)]["n"] += 1
            rows[(f"{it.check} ({it.note})", it.kind)]["hit"] += hit

    print(f"\nlabelled set: {len(items)} texts over {n} planned patches of the {args.scale} synthetic build and "
          f"{args.constructed} constructed plans (seed {args.seed})\n")
    print("| injected error | tier | injected | caught | detection |")
    print("|---|---|---:|---:|---:|")
    for (check, kind), c in sorted(rows.items()):
        if check != "correct":
            print(f"| {check} | {kind} | {c['n']} | {c['hit']} | {100 * c['hit'] / c['n']:.1f}% |")
    print("\n| correct texts | tier | texts | flagged | false flags |")
    print("|---|---|---:|---:|---:|")
    total, flagged = 0, 0
    for (check, kind), c in sorted(rows.items()):
        if check == "correct":
            total, flagged = total + c["n"], flagged + c["hit"]
            print(f"| correct | {kind} | {c['n']} | {c['hit']} | {100 * c['hit'] / c['n']:.1f}% |")
    print(f"| correct | all | {total} | {flagged} | {100 * flagged / max(total, 1):.1f}% |")
    for want in ("category", "position", "count", "leakage"):
        c = Counter()
        for (check, _), v in rows.items():
            if check == want:
                c.update(v)
        print(f"goal {want}: {100 * c['hit'] / max(c['n'], 1):.1f}% caught (>= 95%)")
    print(f"goal false flags: {100 * flagged / max(total, 1):.1f}% (<= 5%)")

    flow = {True: [], False: []}
    for k in range(args.flow_rounds):
        for on in (True, False) if k % 2 == 0 else (False, True):
            flow[on].append(_flow_build(data, args.out / "flow", on))

    v_ms, d_ms, st_ms, p_ms = 1000 * best / n, 1000 * draft_s / n, 1000 * stage_s / n, 1000 * plan_s / n
    print(f"\n| per record ({n} patches) | ms | verify_texts / this |")
    print("|---|---:|---:|")
    print(f"| verify_texts on the template-drafted records | {v_ms:.3f} | 1.00 |")
    print(f"| template drafting (`template_drafter.draft`) | {d_ms:.3f} | {v_ms / d_ms:.1f}x |")
    print(f"| drafting stage (`run_draft`: read plans, draft, ground, write) | {st_ms:.3f} | {100 * v_ms / st_ms:.1f}% |")
    print(f"| planning stage (`run_plan` of the same patches) | {p_ms:.3f} | {100 * v_ms / p_ms:.1f}% |")
    build = {k: v for k, v in stages.items() if k != "verify stage"}
    build_ms = 1000 * sum(build.values()) / n
    print(f"| the build without verification ({' + '.join(build)}) | {build_ms:.3f} | {100 * v_ms / build_ms:.1f}% |")
    if "verify stage" in stages:
        vs_ms = 1000 * stages["verify stage"] / n
        print(f"| the verify stage on its own (`run_verify`: read, check, rewrite shards) | {vs_ms:.3f} | "
              f"{100 * vs_ms / build_ms:.1f}% of the build |")
    id_ms = 1000 * in_draft_s / n
    print(f"| drafting stage verifying each shard before writing it (`run_draft(verify=...)`, as builds do) | "
          f"{id_ms:.3f} | adds {id_ms - st_ms:.3f} ms, {100 * (id_ms - st_ms) / build_ms:.1f}% of the build |")
    if flow[True] and flow[False]:
        on, off = min(flow[True]), min(flow[False])
        flow_ms = 1000 * off / n
        print(f"\nwhole build through the flow in this process, as `geopixeld build` and `make demo` run it ({n} "
              f"patches, best of {args.flow_rounds}): verification off {off:.2f} s ({flow_ms:.1f} ms a patch), on "
              f"{on:.2f} s ({100 * (on - off) / off:+.1f}%, within the run-to-run spread of a shared machine)")
        print(f"verification's own cost (drafting with it minus without, above) over that build: "
              f"**{100 * (id_ms - st_ms) / flow_ms:.1f}%** of its wall time (goal < 5%)")
    print(f"the checks alone (verify_texts, cold parse cache) are {100 * v_ms / build_ms:.1f}% of the stages' sum "
          f"without Prefect, {100 * v_ms / p_ms:.1f}% of planning alone; the labelled set took "
          f"{1000 * label_s / len(items):.3f} ms a text")
    print(f"template-drafted records flagged: {len({f.detail for f in template_failures})} distinct failures "
          f"{sorted({f.check for f in template_failures})}")
    for f in template_failures[:args.show or 5]:
        print("   ", f)
    for title, rows_ in (("misses", misses), ("false flags", false_flags)):
        for it, failures in rows_[:args.show]:
            text = it.description or next(iter({**it.instances, **it.groups}.values()), None) or it.holistic
            print(f"{title}: [{it.check} {it.kind} {it.note}] {text!r} -> {[f.detail for f in failures]}")


if __name__ == "__main__":
    main()
