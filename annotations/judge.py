"""The optional LMM judge: one yes/no request per kept instance or group sentence, after the checks of
`pipeline.verification` (which read the text only) have run on the plan's facts.

An instance sentence is judged on the set-of-marks image, by its mark number; a group sentence on a crop of the
plain patch around the group's members (`crop_box`), so a small model sees the objects it is asked about. The
reply is `{"verdict": "yes" | "no", "reason": ...}`; a "no" becomes the check `judge` of that text.
"""

from __future__ import annotations

from prompts import Template
from pipeline.contracts.records import Group, PlannedObject

from annotations.ask import PLAIN, Ask, bounded_text, object_schema

VERDICT = object_schema({"verdict": {"type": "string", "enum": ["yes", "no"]}, "reason": bounded_text(160, PLAIN)})
MAX_TOKENS = 192  # the longest valid reply (a 160-character reason) even at a token a character: never cut


def crop_image(tag: str) -> str:
    """The name a group's crop goes by among a patch's images (beside `patch` and `som`)."""
    return f"crop:{tag}"


def crop_box(bbox: tuple[float, float, float, float], width: int, height: int, margin: float = 0.25,
             min_side: int = 64) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of a crop around an xywh box: `margin` of its size on every side, at least `min_side`
    pixels a side, inside the patch (pure)."""
    x, y, w, h = bbox
    cx, cy = x + w / 2, y + h / 2
    half_w = max(w * (1 + 2 * margin), min_side) / 2
    half_h = max(h * (1 + 2 * margin), min_side) / 2
    x0, x1 = max(0, int(cx - half_w)), min(width, int(round(cx + half_w)))
    y0, y1 = max(0, int(cy - half_h)), min(height, int(round(cy + half_h)))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def judge_instance_ask(o: PlannedObject, sentence: str, t: Template) -> Ask:
    prompt = t.render(mark_number=o.mark, category_name=o.category, pos=o.position, sentence=sentence)
    return Ask("judge", o.tag, prompt, VERDICT, "som", MAX_TOKENS)


def judge_group_ask(g: Group, sentence: str, t: Template) -> Ask:
    name = g.category if g.count == 1 else g.tag.rsplit("-", 1)[0]
    prompt = t.render(count=g.count, category_name=name, pos=g.position, sentence=sentence)
    return Ask("judge", g.tag, prompt, VERDICT, crop_image(g.tag), MAX_TOKENS)
