"""Text from settings or data in Markdown (the dataset card, the eval report) stays inert text on one line."""

from __future__ import annotations

import pytest

from pipeline.contracts.markdown import md_text


@pytest.mark.parametrize("text, inert", [
    ("run | x", r"run \| x"),  # not a table cell
    ("# heading", r"\# heading"),
    ("a\n# heading", r"a \# heading"),  # one line
    ("[link](http://x)", r"\[link\]\(http://x\)"),
    ("<script>alert(1)</script>", r"&lt;script&gt;alert\(1\)&lt;/script&gt;"),
    ("- item", r"\- item"),
    ("1. item", r"1\. item"),
])
def test_markup_is_escaped(text, inert):
    assert md_text(text) == inert


def test_plain_text_is_kept():
    assert md_text("GeoPixelD build 2 of geopixeld-tiny") == "GeoPixelD build 2 of geopixeld-tiny"
