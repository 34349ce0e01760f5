"""The holistic annotation (GeoPixel, figure 3): a short description of the whole patch.

Every kept patch gets exactly one; it needs nothing planned beyond the patch itself, so it has no tier rule.
The LMM sees the plain patch and the paper's prompt ("Describe the image in four short sentences."); the
template drafter writes four sentences from the plan's objects and priors instead.
"""

from __future__ import annotations

from collections import Counter

from prompts import Template
from pipeline.contracts.categories import Vocabulary
from pipeline.contracts.records import PatchPlan

from annotations.ask import PLAIN, Ask, bounded_text, object_schema

DESCRIPTION = bounded_text(800, PLAIN)


def holistic_ask(t: Template) -> Ask:
    """The holistic request: the plain patch, the template as it is, a reply `{"description": ...}`."""
    return Ask("holistic", "", t.render(), object_schema({"description": DESCRIPTION}), "patch", 256)


def _count_phrase(n: int, singular: str, plural: str) -> str:
    return f"{'one' if n == 1 else n} {singular if n == 1 else plural}"


def holistic_sentences(plan: PatchPlan, vocab: Vocabulary) -> str:
    """The template's four short sentences: what the patch shows, its main objects, where they are, its edges.

    `plan` must have at least one object (planning drops empty patches).
    """
    counts = Counter(o.category_id for o in plan.objects)
    parts = [_count_phrase(n, vocab[c].display, vocab[c].plural) for c, n in counts.most_common()]
    listing = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    biggest = max(plan.objects, key=lambda o: o.area)
    cut = sum(o.truncated for o in plan.objects)
    return " ".join([
        "The image is an aerial view of a scene.",
        f"It contains {listing}.",
        f"The largest object is a {biggest.size} {biggest.category} at the {biggest.position}.",
        f"{cut} of the {len(plan.objects)} objects are cut by the image border." if cut
        else "No object is cut by the image border.",
    ])
