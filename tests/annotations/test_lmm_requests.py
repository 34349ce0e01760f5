"""Prompt rendering and reply schemas of the LMM tiers (no server needed)."""

from __future__ import annotations

import re

import pytest

import prompts
from annotations.lmm_requests import SENTENCE, assembled, bounded_text, group_ask, instance_ask, instance_batch_ask
from pipeline.contracts.grounding import Target, ground
from pipeline.contracts.records import Group, PlannedObject


def _obj(mark, tag, pos="top left"):
    return PlannedObject(mark, 4, "tennis court", {}, (0, 0, 1, 1), 1, (0, 0), pos, "small", 0.0, "vertical", 90.0,
                         3.0, True, tier="instance", mark=mark, tag=tag)


def test_instance_prompt_is_the_papers_with_priors_filled_in():
    ask = instance_ask(_obj(3, "tennis court-1"), prompts.load("instance"))
    assert ask.prompt == ("List down all the attributes of the tennis court at the top left that is marked with number 3 "
                          "in one short sentence. Do not mention the marked number in output.")
    assert ask.image == "som" and set(ask.schema["required"]) == {"sentence"}


def test_batch_schema_admits_exactly_the_patch_marks():
    ask = instance_batch_ask([_obj(1, "tennis court-1"), _obj(4, "tennis court-2", "right")], prompts.load("instance_batch"))
    items = ask.schema["properties"]["objects"]
    assert items["minItems"] == items["maxItems"] == 2 and items["items"]["properties"]["mark"]["enum"] == [1, 4]
    assert "4: the tennis court at the right" in ask.prompt


def test_group_prompt_uses_quantity_and_plural():
    g = Group(1, "small vehicles-1", 9, "small vehicle", "2x2", "top left", "top left", 14, "many", [1], {}, (0, 0, 1, 1), 1)
    ask = group_ask(g, prompts.load("group"))
    assert ask.prompt.startswith("Give a brief, single-sentence description of many small vehicles at the top left")


def test_bounded_text_patterns_stay_under_xgrammars_limit_and_bound_length():
    pat = bounded_text(300, r"[a-z]")["pattern"]
    assert max(int(n) for n in re.findall(r"\{\d+,(\d+)\}", pat)) <= 128
    rx = re.compile(pat)
    assert rx.match("a" * 300) and not rx.match("a" * 301) and not rx.match("")
    assert not re.match(SENTENCE["pattern"], "a <p> tag </p>") and re.match(SENTENCE["pattern"], "A red roof, two doors.")


def test_template_fields_must_be_plain_names(tmp_path):
    (tmp_path / "holistic.txt").write_text("Describe {image.__class__}.")
    with pytest.raises(ValueError, match="plain names"):
        prompts.load("holistic", tmp_path)
    (tmp_path / "holistic.txt").write_text("Describe the patch briefly.")
    assert prompts.load("holistic", tmp_path).render() == "Describe the patch briefly."


def test_assembly_grounds_every_tag():
    targets = {t: Target(t, "instance", "x", (1,), {}) for t in ("plane-1", "planes-1")}
    text = assembled("An airport.", [("plane-1", "A white jet."), ("planes-1", "Three parked jets.")])
    g = ground(text, targets)
    assert g.ok and not g.missing and [p.tag for p in g.phrases] == ["plane-1", "planes-1"]
