"""The merge: its request, and the deterministic assemblies it and the template drafter fall back on."""

from __future__ import annotations

import re

import prompts
from annotations.merge import assemble, assembled, merge_ask
from pipeline.contracts.grounding import Target, ground


def test_assembly_grounds_every_tag():
    targets = {t: Target(t, "instance", "x", (1,), {}) for t in ("plane-1", "planes-1")}
    text = assembled("An airport.", [("plane-1", "A white jet."), ("planes-1", "Three parked jets.")])
    g = ground(text, targets)
    assert g.ok and not g.missing and [p.tag for p in g.phrases] == ["plane-1", "planes-1"]


def test_merge_request_lists_each_tagged_sentence_and_allows_markup():
    ask = merge_ask("An airport.", [("plane-1", "A white jet."), ("planes-1", "Three parked jets.")], prompts.load("merge"))
    assert (ask.tier, ask.image, ask.max_tokens) == ("merge", None, 160 + 64 * 2)
    assert "<p> plane-1 </p>: A white jet.\n<p> planes-1 </p>: Three parked jets." in ask.prompt
    assert re.match(ask.schema["properties"]["description"]["pattern"], "A <p> plane-1 </p> [SEG] on the apron.")


def test_template_assembly_keeps_tier_order_and_skips_empty_texts():
    assert assemble(" Hol. ", ["The <p> plane-1 </p> [SEG] is big.", "  "], ["The <p> cars-1 </p> [SEG] park."]) == (
        "Hol. The <p> plane-1 </p> [SEG] is big. The <p> cars-1 </p> [SEG] park.")
    assert assembled("  ", [("plane-1", " A jet. ")]) == "<p> plane-1 </p> [SEG] : A jet."
