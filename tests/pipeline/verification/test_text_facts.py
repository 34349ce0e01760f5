"""The sentence parser: names, positions and numbers as models write them, and what is not one (relations,
orientations, directions, parts, hyphenated adjectives)."""

from __future__ import annotations

import pytest

from pipeline.verification.settings import VerifySettings
from pipeline.verification.synonyms import plural
from pipeline.verification.text_facts import ALL_CELLS, number_value, parse_text

S = VerifySettings()


def facts(text: str, tags=None):
    return parse_text(text, S.lexicon(), S.vague(), S.approx_tolerance, tags or {})


def cells(text: str) -> list[list[tuple[int, int]]]:
    return [sorted(p.cells) for p in facts(text).positions if p.attached is None]


TL, T, TR, L, C, R, BL, B, BR = (0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)
TOP, BOTTOM, LEFT, RIGHT = [TL, T, TR], [BL, B, BR], [TL, L, BL], [TR, R, BR]


@pytest.mark.parametrize("text, expected", [
    ("A plane in the lower-left corner of the image.", [[BL]]),
    ("A plane at the Bottom Left.", [[BL]]),
    ("The court sits in the upper right part of the picture.", [[TR]]),
    ("Cars are parked in the north-western part.", [[TL]]),
    ("A tank stands near the upper edge.", [TOP]),
    ("Boats are moored on the left-hand side of the image.", [LEFT]),
    ("The pool is located at the top centre.", [[T]]),
    ("A jet in the center-left of the frame.", [[L]]),
    ("The field lies in the middle of the left side.", [[L]]),
    ("The court lies on the left side of the bottom edge.", [[BL]]),
    ("Tanks fill the lower half of the image.", [sorted(BOTTOM + [L, C, R])]),
    ("A track positioned centrally.", [[C]]),
    ("The plane is in the middle of the image.", [[C]]),
    ("Courts line the left and right sides.", [sorted(LEFT + RIGHT)]),
    ("Cars are scattered across the image.", [sorted(ALL_CELLS)]),
    ("In the left bottom corner, a small car.", [[BL]]),
])
def test_absolute_positions(text, expected):
    assert cells(text) == expected


@pytest.mark.parametrize("text", [
    "A car is parked to the left of the building.",
    "The plane is parked just to the right of the terminal.",
    "Cars are parked in the middle of the road.",
    "The jet is oriented from the top left to the bottom right.",
    "A road runs diagonally from the lower-left to the upper-right.",
    "The plane is facing the top right.",
    "Its nose is pointing toward the upper left.",
    "The plane's left wing is white.",
    "The plane has its left engine missing.",
    "The court has a net running across the middle.",
    "A roundabout with a green island in the middle.",
    "The image is a top-down view of a harbor.",
    "Two cars turn right next to a truck.",
    "A car left in the lot.",
])
def test_what_is_not_a_position(text):
    assert cells(text) == []


def test_a_position_of_a_relation_is_attached_to_it():
    f = facts("The tennis court at the top left has a parking lot on the right side.")
    top, right = f.positions
    assert top.attached is None and right.attached is not None and f.text[slice(*right.attached)] == "a parking lot"


@pytest.mark.parametrize("text, low, high, value", [
    ("five cars", 5, 5, 5), ("12 cars", 12, 12, 12), ("twenty-five cars", 25, 25, 25), ("1,200 cars", 1200, 1200, 1200),
    ("about 20 cars", 15, 25, None), ("roughly five cars", 4, 6, None), ("more than 10 cars", 11, None, None),
    ("at least 3 cars", 3, None, None), ("fewer than five cars", 0, 4, None), ("up to 6 cars", 0, 6, None),
    ("between 5 and 8 cars", 5, 8, None), ("two or three cars", 2, 3, None), ("a dozen cars", 9, 15, None),
    ("about a dozen cars", 9, 15, None), ("more than a hundred cars", 101, None, None), ("several cars", 3, 15, None),
    ("a few cars", 2, 7, None), ("numerous cars", 6, None, None), ("a single car", 1, 1, None),
    ("dozens of cars", 12, None, None), ("three rows of cars", 6, None, None), ("20 or so cars", 15, 25, None),
])
def test_quantities_attach_to_their_noun(text, low, high, value):
    (m,) = facts(text).mentions
    assert (m.quantity.low, m.quantity.high, m.quantity.value) == (low, high, value), m.quantity


@pytest.mark.parametrize("text", ["a twin-engine plane", "a two-lane road with a car", "a single-storey house by a car",
                                  "the three-story building next to the car"])
def test_hyphenated_numbers_are_adjectives(text):
    assert all(m.quantity is None for m in facts(text).mentions)


def test_a_quantity_reaches_its_noun_over_attributes_and_collectives():
    (m,) = facts("A row of 12 parked white cars").mentions
    assert m.quantity.value == 12
    (m,) = facts("A group of small vessels").mentions
    assert (m.quantity.low, m.quantity.high) == (2, None)
    (m,) = facts("One of the two tennis courts").mentions
    assert m.quantity.value == 1  # "one of the two": the partitive counts the subject


@pytest.mark.parametrize("text, surface, categories, plural_", [
    ("A white commercial airliner", "airliner", {"plane"}, False),
    ("Three lorries", "lorries", {"large vehicle"}, True),
    ("the harbour", "harbour", {"harbor"}, False),
    ("a football pitch", "football pitch", {"soccer ball field"}, False),
    ("two courts", "courts", {"tennis court", "basketball court"}, True),
    ("the semi-trailer", "semi trailer", {"large vehicle"}, False),
    ("Many aircraft", "aircraft", {"plane", "helicopter"}, None),
    ("an SUV", "suv", {"small vehicle"}, False),
    ("a traffic circle", "traffic circle", {"roundabout"}, False),
])
def test_names_of_categories(text, surface, categories, plural_):
    (m,) = facts(text).mentions
    assert (m.surface, set(m.categories), m.plural) == (surface, categories, plural_)


@pytest.mark.parametrize("text", ["a car park", "a railway track", "the bus stop", "green fields", "a jet bridge",
                                  "a diamond-shaped island", "a large parking lot"])
def test_word_groups_that_name_no_category(text):
    assert facts(text).mentions == ()


def test_relations_and_negations():
    f = facts("A plane parked next to two trucks, with no ships nearby.")
    plane, trucks, ships = f.mentions
    assert not plane.relational and trucks.relational and ships.negated and not trucks.negated
    assert facts("The image does not show any helicopters.").mentions[0].negated
    assert facts("Vehicles are absent from the scene.").mentions[0].negated


def test_a_grounded_phrase_is_an_anchor_of_its_tag():
    f = facts("Five <p> small vehicles-1 </p> [SEG] are parked at the top.", {"small vehicles-1": "small vehicle"})
    (m,) = f.mentions
    assert m.tag == "small vehicles-1" and m.categories == {"small vehicle"} and m.quantity.value == 5
    assert f.anchors == ((5, "small vehicles-1"),)


def test_subject_skips_relations_and_weak_names():
    f = facts("Next to a green field, boats are moored at the harbour.")
    assert f.subject("harbor").surface == "boats"
    assert facts("A green field surrounds the tennis court.").subject("tennis court").surface == "tennis court"


def test_number_words_and_plurals():
    assert number_value("twenty one") == (21, False) and number_value("two dozen") == (24, True)
    assert [plural(w) for w in ("bus", "ferry", "quay", "aircraft", "tennis court", "lorry")] == \
        ["buses", "ferries", "quays", "aircraft", "tennis courts", "lorries"]
