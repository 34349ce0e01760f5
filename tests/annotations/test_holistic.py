"""The holistic annotation: the paper's request on the plain patch and the template's four short sentences."""

from __future__ import annotations

import re

import pytest

import prompts
from annotations.holistic import (border_sentence, closing_remark, holistic_ask, holistic_parts, holistic_sentences,
                                  largest_sentence, scene_kind)
from pipeline.contracts.categories import ISAID
from tests.annotations.objects import CAR, COURT, HARBOR, PLANE, SHIP, obj, patch_plan


def test_holistic_request_is_the_papers_prompt_on_the_plain_patch():
    ask = holistic_ask(prompts.load("holistic"))
    assert ask.prompt == "Describe the image in four short sentences."
    assert (ask.tier, ask.key, ask.image) == ("holistic", "", "patch")
    pattern = ask.schema["properties"]["description"]["pattern"]
    assert ask.schema["required"] == ["description"] and not ask.schema["additionalProperties"]
    assert sum(int(n) for n in re.findall(r"\{\d+,(\d+)\}", pattern)) == 800  # at most 800 characters
    assert re.match(pattern, "x" * 800) and not re.match(pattern, "a <p> b")


def _scene():
    cars = [obj(1, CAR, 100), obj(2, CAR, 120)]
    cars[1].truncated = True
    plane = obj(3, PLANE, 5000)
    plane.size, plane.position, plane.category = "small", "center", "plane"
    return cars, plane


def test_four_short_sentences_count_objects_name_the_largest_and_the_cut_ones():
    cars, plane = _scene()
    parts = holistic_parts(patch_plan([*cars, plane]), ISAID)
    assert len(parts) == 4 and all(p.endswith(".") and len(p) < 120 for p in parts)
    assert parts[0].endswith("an airport apron.") or parts[0].endswith("part of an airfield.")  # the plane covers most
    assert parts[1].endswith("two small vehicles and one plane.")
    assert parts[2] == "The largest object is a plane at the center."  # never "a small plane": it is the largest
    assert parts[3] == "One of the three objects is cut by the image border."  # not "1 of the 3 objects are"
    assert holistic_sentences(patch_plan([*cars, plane]), ISAID) == " ".join(parts)


@pytest.mark.parametrize("cut, n, sentence", [
    (0, 3, "No object is cut by the image border."), (1, 3, "One of the three objects is cut by the image border."),
    (2, 16, "Two of the 16 objects are cut by the image border."), (2, 2, "Both objects are cut by the image border."),
    (4, 4, "All four objects are cut by the image border."), (1, 1, "It is cut by the image border."),
    (0, 1, "It lies wholly inside the image.")])
def test_border_sentence_agrees_in_number(cut, n, sentence):
    objs = [obj(i, CAR, 100) for i in range(n)]
    for o in objs[:cut]:
        o.truncated = True
    assert border_sentence(patch_plan(objs)) == sentence


def test_the_largest_object_gets_its_share_not_a_size_word():
    big = obj(1, HARBOR, 64000)
    big.position, big.size, big.category = "left", "large", "harbor"
    assert largest_sentence(patch_plan([big, obj(2, SHIP, 100)])) == (
        "The largest object is a harbor at the left, covering about 10% of the image.")


def test_contents_agree_in_number_for_one_object():
    o = obj(1, COURT, 2000)
    o.position = "top"
    for pid in ("P0001", "P0002", "P0003", "P0004", "P0005"):
        plan = patch_plan([o])
        plan.patch_id = pid
        text = holistic_sentences(plan, ISAID)
        assert "one tennis court" in text and "Visible are one" not in text
        assert "It sits at the top" in text


def test_wording_depends_on_the_patch_only():
    cars, plane = _scene()
    plans = []
    for pid in ("P0001_0_800_0_800", "P0002_0_800_0_800", "P0003_0_800_0_800", "P0004_0_800_0_800"):
        plan = patch_plan([*cars, plane])
        plan.patch_id = pid
        plans.append(plan)
    texts = [holistic_sentences(p, ISAID) for p in plans]
    assert texts == [holistic_sentences(p, ISAID) for p in plans]  # the same plan, the same words, every run
    assert len(set(texts)) > 1  # but patches do not all read alike
    assert {scene_kind(p, ISAID) for p in plans} == {"airport"}
    assert all(closing_remark(p, ISAID).endswith(".") for p in plans)
