"""Grounding of `<p> tag </p> [SEG]` phrases against a plan's targets."""

from __future__ import annotations

from pipeline.contracts.grounding import Target, ground, strip_tags

RLE = {"size": [4, 4], "counts": "04<"}
TARGETS = {t: Target(t, k, "x", (i,), RLE) for i, (t, k) in
           enumerate([("tennis court-1", "instance"), ("tennis court-2", "instance"), ("small vehicles-1", "group")])}


def test_spans_tiers_and_order():
    d = "A view. The <p> tennis court-2 </p> [SEG] is blue, the <p> small vehicles-1 </p> [SEG] park."
    g = ground(d, TARGETS)
    assert g.ok and [p.tag for p in g.phrases] == ["tennis court-2", "small vehicles-1"]
    assert [d[p.start : p.end] for p in g.phrases] == ["tennis court-2", "small vehicles-1"]
    assert [p.tier for p in g.phrases] == ["instance", "group"] and g.missing == ["tennis court-1"]


def test_invented_duplicated_and_broken_markup_are_errors():
    assert "not a planned tag" in ground("<p> plane-1 </p> [SEG]", TARGETS).errors[0]
    assert "more than once" in ground("<p> tennis court-1 </p> [SEG] <p> tennis court-1 </p> [SEG]", TARGETS).errors[0]
    assert "unbalanced" in ground("<p> tennis court-1 </p> and [SEG] <p> x", TARGETS).errors[0]
    assert "unbalanced" in ground("<p> tennis court-1 </p> [SEG] [SEG]", TARGETS).errors[0]


def test_script_in_text_is_just_text():
    d = "<script>alert(1)</script> The <p> tennis court-1 </p> [SEG] ."
    g = ground(d, TARGETS)
    assert g.ok and g.phrases[0].tag == "tennis court-1"


def test_strip_tags_for_caption_metrics():
    d = "The <p> tennis court-2 </p> [SEG] , <p> tennis court-3 </p> [SEG] , and trees."
    assert strip_tags(d) == "The tennis court, tennis court, and trees."
