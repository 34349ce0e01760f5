"""What every request shares: the xgrammar-safe string bounds, and prompt templates that fill plain names only."""

from __future__ import annotations

import re

import pytest

import prompts
from annotations.ask import SENTENCE, bounded_text


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
