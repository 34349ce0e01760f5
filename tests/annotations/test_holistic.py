"""The holistic annotation: the paper's request on the plain patch and the template's four sentences."""

from __future__ import annotations

import re

import prompts
from annotations.holistic import holistic_ask, holistic_sentences
from pipeline.contracts.categories import ISAID
from tests.annotations.objects import CAR, PLANE, obj, patch_plan


def test_holistic_request_is_the_papers_prompt_on_the_plain_patch():
    ask = holistic_ask(prompts.load("holistic"))
    assert ask.prompt == "Describe the image in four short sentences."
    assert (ask.tier, ask.key, ask.image) == ("holistic", "", "patch")
    pattern = ask.schema["properties"]["description"]["pattern"]
    assert ask.schema["required"] == ["description"] and not ask.schema["additionalProperties"]
    assert sum(int(n) for n in re.findall(r"\{\d+,(\d+)\}", pattern)) == 800  # at most 800 characters
    assert re.match(pattern, "x" * 800) and not re.match(pattern, "a <p> b")


def test_template_sentences_count_objects_name_the_largest_and_the_cut_ones():
    cars = [obj(1, CAR, 100), obj(2, CAR, 120)]
    cars[1].truncated = True
    plane = obj(3, PLANE, 5000)
    plane.size, plane.position = "large", "center"
    text = holistic_sentences(patch_plan([*cars, plane]), ISAID)
    assert text == ("The image is an aerial view of a scene. It contains 2 small vehicles and one plane. "
                    "The largest object is a large plane at the center. 1 of the 3 objects are cut by the image border.")
    assert holistic_sentences(patch_plan([plane]), ISAID).endswith("one plane. The largest object is a large plane "
                                                                   "at the center. No object is cut by the image border.")
