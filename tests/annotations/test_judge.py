"""The LMM judge's requests: what they ask, on which image, and the crop a group is judged on."""

from __future__ import annotations

import jsonschema
import pytest

import prompts
from tests.annotations.objects import obj
from annotations.judge import VERDICT, crop_box, crop_image, judge_group_ask, judge_instance_ask


def test_the_verdict_schema_takes_yes_or_no_and_a_reason_only():
    jsonschema.validate({"verdict": "no", "reason": "it is a ship, not a plane"}, VERDICT)
    for bad in ({"verdict": "maybe", "reason": "x"}, {"verdict": "yes"}, {"verdict": "yes", "reason": "x", "more": 1},
                {"verdict": "yes", "reason": 'with "quotes"'}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, VERDICT)


@pytest.mark.parametrize("bbox, want", [
    ((100, 100, 40, 20), (88, 78, 152, 142)),   # small: at least 64 px a side around its centre
    ((0, 0, 200, 100), (0, 0, 250, 125)),       # a quarter of its size on each side, clipped at the patch edge
    ((700, 760, 100, 40), (675, 748, 800, 800)),
])
def test_a_crop_holds_the_box_with_a_margin_inside_the_patch(bbox, want):
    x0, y0, x1, y1 = crop_box(bbox, 800, 800)
    assert (x0, y0, x1, y1) == want
    x, y, w, h = bbox
    assert x0 <= x and y0 <= y and x1 >= min(800, x + w) and y1 >= min(800, y + h)


def test_instance_and_group_asks_name_the_object_the_sentence_and_their_image():
    t = {n: prompts.load(n) for n in prompts.JUDGE}
    inst = judge_instance_ask(_obj(), "A white airliner at the left.", t["judge_instance"])
    assert inst.tier == "judge" and inst.key == "plane-1" and inst.image == "som"
    assert "number 3" in inst.prompt and "plane" in inst.prompt and "A white airliner at the left." in inst.prompt
    g = _group()
    grp = judge_group_ask(g, "Five cars parked at the top.", t["judge_group"])
    assert grp.image == crop_image("small vehicles-1") and "5 small vehicles" in grp.prompt
    assert "Five cars parked at the top." in grp.prompt and grp.schema == VERDICT


def _obj():
    o = obj(1, 1, cx=100, cy=400)  # category 1: plane
    o.tag, o.mark, o.category, o.position = "plane-1", 3, "plane", "left"
    return o


def _group():
    class G:  # the fields the ask reads
        tag, category, count, position = "small vehicles-1", "small vehicle", 5, "top"
    return G()
