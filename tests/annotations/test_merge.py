"""The merge: its request, and the deterministic assemblies it and the template drafter fall back on, in the shape of
GeoPixelD's captions (summary, instance sentences, group sentences, closing remark)."""

from __future__ import annotations

import re

import prompts
from annotations.merge import assemble, assembled, grounded, merge_ask, sentences, summary_and_closing
from pipeline.contracts.grounding import Target, ground

HOLISTIC = "An airport apron. Two jets wait at the gates. Service vans drive between them. The airport looks busy."


def test_assembly_grounds_every_tag():
    targets = {t: Target(t, "instance", "x", (1,), {}) for t in ("plane-1", "planes-1")}
    text = assembled("An airport.", [("plane-1", "A white jet."), ("planes-1", "Three parked jets.")])
    g = ground(text, targets)
    assert g.ok and not g.missing and [p.tag for p in g.phrases] == ["plane-1", "planes-1"]


def test_assembly_has_the_shape_of_a_merged_caption():
    tagged = [("plane-1", "The white plane stands at the gate."), ("small vehicles-1", "Several small vehicles park.")]
    text = assembled(HOLISTIC, tagged)
    assert text == ("An airport apron. Two jets wait at the gates. Service vans drive between them. "
                    "The white <p> plane-1 </p> [SEG] stands at the gate. "
                    "Several <p> small vehicles-1 </p> [SEG] park. The airport looks busy.")


def test_assembly_leads_a_sentence_by_its_phrase_when_it_never_names_the_tag():
    assert grounded("plane-1", " A white jet. ") == "<p> plane-1 </p> [SEG] : A white jet."
    assert grounded("planes-1", "Several planes are parked.") == "Several <p> planes-1 </p> [SEG] are parked."
    assert grounded("plane-1", "Two planes nearby.") == "<p> plane-1 </p> [SEG] : Two planes nearby."  # not "plane"s


def test_assembly_never_leaves_stray_markup_from_tier_texts():
    targets = {"plane-1": Target("plane-1", "instance", "plane", (1,), {})}
    text = assembled("An apron [SEG]. It is busy.", [("plane-1", "A plane [SEG] waits.")])
    g = ground(text, targets)
    assert g.ok and not g.missing and text.count("[SEG]") == 1


def test_summary_and_closing_split_the_holistic_text():
    assert summary_and_closing(HOLISTIC) == (
        "An airport apron. Two jets wait at the gates. Service vans drive between them.", "The airport looks busy.")
    assert summary_and_closing("One sentence only.") == ("One sentence only.", "")
    assert sentences("A 2.5 m wide road. It bends.") == ["A 2.5 m wide road.", "It bends."]
    assert assembled("  ", [("plane-1", " A jet. ")]) == "<p> plane-1 </p> [SEG] : A jet."


def test_merge_request_lists_each_tagged_sentence_and_allows_markup():
    ask = merge_ask("An airport.", [("plane-1", "A white jet."), ("planes-1", "Three parked jets.")], prompts.load("merge"))
    assert (ask.tier, ask.image, ask.max_tokens) == ("merge", None, 160 + 64 * 2)
    assert "<p> plane-1 </p>: A white jet.\n<p> planes-1 </p>: Three parked jets." in ask.prompt
    assert re.match(ask.schema["properties"]["description"]["pattern"], "A <p> plane-1 </p> [SEG] on the apron.")


def test_template_assembly_keeps_the_order_and_skips_empty_texts():
    assert assemble(" Hol. ", ["The <p> plane-1 </p> [SEG] is big.", "  "], ["The <p> cars-1 </p> [SEG] park."],
                    "Bye.") == "Hol. The <p> plane-1 </p> [SEG] is big. The <p> cars-1 </p> [SEG] park. Bye."
