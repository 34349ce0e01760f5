"""Merge fidelity: the merged description keeps each tag and its tier text's facts, and contradicts no plan fact."""

from __future__ import annotations

import pytest

from annotations.merge import assembled
from pipeline.contracts.records import Group
from pipeline.verification.checks import is_assembly, verify_texts
from tests.pipeline.verification.plans import planned, plan_of

HOLISTIC = "The image shows an airport apron with two planes, a tennis court and a few cars."
INSTANCES = {"tennis court-1": "A green tennis court with white lines sits in the top-left corner.",
             "plane-1": "A white airliner is parked at the bottom right.",
             "plane-2": "A smaller white jet is parked at the bottom of the image."}
GROUPS = {"small vehicles-1": "Five cars are parked along the street at the top."}


@pytest.fixture(scope="module")
def plan():
    objs = [planned(1, "tennis court", "top left", None, "instance", "tennis court-1", 1),
            planned(2, "plane", "bottom right", None, "instance", "plane-1", 2),
            planned(3, "plane", "bottom", None, "instance", "plane-2", 3)]
    members = [planned(100 + k, "small vehicle", "top right", (600, 50, 150, 150)) for k in range(5)]
    cars = Group(1, "small vehicles-1", 9, "small vehicle", "2x1", "top", "top right", 5, "a few",
                 [m.object_id for m in members], {"size": [800, 800], "counts": ""}, (600, 50, 150, 150), 22500)
    return plan_of(objs + members, [cars])


def merge_failures(plan, description, instances=INSTANCES, groups=GROUPS):
    return [f.detail for f in verify_texts(plan, HOLISTIC, instances, groups, description) if f.tier == "merge"]


@pytest.mark.parametrize("description", [
    "The image shows an airport apron. A green <p> tennis court-1 </p> [SEG] sits in the top-left corner, while a white "
    "airliner <p> plane-1 </p> [SEG] is parked at the bottom right and a smaller jet <p> plane-2 </p> [SEG] at the "
    "bottom. Five cars <p> small vehicles-1 </p> [SEG] are parked along the street at the top.",
    "An airport apron. The <p> tennis court-1 </p> [SEG] is green and sits in the top-left corner. The "
    "<p> plane-1 </p> [SEG] and <p> plane-2 </p> [SEG] are parked at the bottom. Five <p> small vehicles-1 </p> "
    "[SEG] are parked at the top.",
    "An airport apron. The <p> tennis court-1 </p> [SEG] lies in the top-left corner. The <p> plane-1 </p> [SEG] "
    "and <p> plane-2 </p> [SEG], two white jets, are parked at the bottom right and bottom respectively. Five "
    "<p> small vehicles-1 </p> [SEG] are parked at the top, next to the terminal.",
    "At the top left, a green <p> tennis court-1 </p> [SEG] borders the apron. In the lower-right corner stands a "
    "white <p> plane-1 </p> [SEG]; a smaller <p> plane-2 </p> [SEG] waits at the bottom centre. Along the top street, "
    "five <p> small vehicles-1 </p> [SEG] are parked. There are no ships.",
])
def test_faithful_merges_pass(plan, description):
    assert merge_failures(plan, description) == []


@pytest.mark.parametrize("description, expected", [
    ("An airport apron. The <p> tennis court-1 </p> [SEG] sits in the bottom-left corner. The <p> plane-1 </p> [SEG] "
     "is parked at the bottom right, the <p> plane-2 </p> [SEG] at the bottom. Five <p> small vehicles-1 </p> [SEG] "
     "are parked at the top.", ["tennis court-1: says 'bottom-left corner'", "tennis court-1: drops the position"]),
    ("An airport apron. The <p> tennis court-1 </p> [SEG] sits at the top left. The <p> plane-1 </p> [SEG] is parked "
     "at the bottom right and the <p> plane-2 </p> [SEG] at the bottom. Three <p> small vehicles-1 </p> [SEG] are "
     "parked at the top.", ["small vehicles-1: says 'three'", "small vehicles-1: drops the count 5"]),
    ("An airport apron. The <p> tennis court-1 </p> [SEG] sits at the top left. The <p> plane-1 </p> [SEG] is a white "
     "helicopter at the bottom right and the <p> plane-2 </p> [SEG] is at the bottom. Five <p> small vehicles-1 </p> "
     "[SEG] are parked at the top.", ["plane-1: calls it 'helicopter'"]),
    ("An airport apron. The <p> tennis court-1 </p> [SEG] sits at the top left. The <p> plane-1 </p> [SEG] is parked "
     "at the bottom right. Five <p> small vehicles-1 </p> [SEG] are parked at the top.", ["drops 'plane-2'"]),
    ("An airport apron with ten planes. The <p> tennis court-1 </p> [SEG] sits at the top left. The <p> plane-1 </p> "
     "[SEG] is parked at the bottom right and the <p> plane-2 </p> [SEG] at the bottom. Five <p> small vehicles-1 </p> "
     "[SEG] are parked at the top.", ["says 'ten' planes, the patch has 2"]),
    ("An airport apron. The <p> tennis court-1 </p> [SEG] is green. The <p> plane-1 </p> [SEG] is parked at the "
     "bottom right and the <p> plane-2 </p> [SEG] at the bottom. Five <p> small vehicles-1 </p> [SEG] are parked at "
     "the top.", ["tennis court-1: drops the position 'top-left corner'"]),
    ("An airport apron. The <p> tennis court-1 </p> [SEG] lies at the top left. The <p> plane-1 </p> [SEG] and "
     "<p> plane-2 </p> [SEG] are parked at the bottom and top right respectively. Five <p> small vehicles-1 </p> "
     "[SEG] are parked at the top.", ["plane-2: says 'bottom and top right' (top right)"]),
])
def test_unfaithful_merges_fail(plan, description, expected):
    got = merge_failures(plan, description)
    for want in expected:
        assert any(d.startswith(want) for d in got), (want, got)
    assert all(f.check == "merge" and f.tag == "" for f in verify_texts(plan, HOLISTIC, INSTANCES, GROUPS, description)
               if f.tier == "merge" and f.check not in ("absent", "form", "leakage"))


def test_a_merge_naming_a_category_the_patch_lacks_fails_absent(plan):
    description = ("An airport apron beside a harbour full of boats. The <p> tennis court-1 </p> [SEG] sits at the top "
                   "left. The <p> plane-1 </p> [SEG] is parked at the bottom right and the <p> plane-2 </p> [SEG] at the "
                   "bottom. Five <p> small vehicles-1 </p> [SEG] are parked at the top.")
    failures = verify_texts(plan, HOLISTIC, INSTANCES, GROUPS, description)
    assert {(f.tier, f.check) for f in failures} == {("merge", "absent")}
    assert {f.detail for f in failures} == {"names 'harbour', the patch has no harbor", "names 'boats', the patch has no ship"}


def test_merge_leakage_is_what_lies_outside_the_grounded_phrases(plan):
    base = ("An airport apron. The <p> tennis court-1 </p> [SEG] sits at the top left. The <p> plane-1 </p> [SEG] is "
            "parked at the bottom right and the <p> plane-2 </p> [SEG] at the bottom. Five <p> small vehicles-1 </p> "
            "[SEG] are parked at the top.")
    assert verify_texts(plan, HOLISTIC, INSTANCES, GROUPS, base) == []
    for extra, what in ((" The plane-1 is white.", "names a tag"), (" The jet marked 2 is white.", "mark number"),
                        (" <b>Done</b>", "markup")):
        failures = [f for f in verify_texts(plan, HOLISTIC, INSTANCES, GROUPS, base + extra) if f.check == "leakage"]
        assert failures and what in failures[0].detail, (extra, failures)


def test_an_assembly_of_the_tier_texts_keeps_their_facts_by_construction(plan):
    tagged = [*INSTANCES.items(), *GROUPS.items()]
    for description in (" ".join([HOLISTIC, *INSTANCES.values(), *GROUPS.values()]), assembled(HOLISTIC, tagged)):
        assert is_assembly(description, HOLISTIC, INSTANCES, GROUPS)
        assert verify_texts(plan, HOLISTIC, INSTANCES, GROUPS, description) == []
    wrong = dict(INSTANCES, **{"plane-1": "A white airliner is parked at the top left."})
    failures = verify_texts(plan, HOLISTIC, wrong, GROUPS, assembled(HOLISTIC, [*wrong.items(), *GROUPS.items()]))
    assert [(f.tier, f.tag, f.check) for f in failures] == [("instance", "plane-1", "position")]  # once, at its tier
