"""The offline template drafter: sentences built from the spatial priors, no model.

It is the default when no vLLM endpoint is configured and the baseline LMM output is compared against;
its records say `drafter: template` in their provenance so they are never mistaken for LMM text.
"""

from __future__ import annotations

from collections import Counter

from pipeline.contracts.categories import Vocabulary
from pipeline.contracts.records import Group, PatchPlan, PlannedObject

DRAFTER = "template"
VERSION = "1"
_ORIENTATION = {"horizontal": "oriented horizontally", "vertical": "oriented vertically"}


def _count_phrase(n: int, singular: str, plural: str) -> str:
    return f"{'one' if n == 1 else n} {singular if n == 1 else plural}"


def holistic(plan: PatchPlan, vocab: Vocabulary) -> str:
    """Four short sentences: what the patch shows, its main objects, where they are, and its edges."""
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


def instance_sentence(o: PlannedObject) -> str:
    extra = []
    if o.orientation:
        extra.append(_ORIENTATION.get(o.orientation) or "running " + o.orientation.replace("diagonal", "diagonally", 1))
    if o.truncated:
        extra.append("partly cut by the image border")
    tail = (", " + ", ".join(extra)) if extra else ""
    return f"The <p> {o.tag} </p> [SEG] is a {o.size} {o.category} at the {o.position}{tail}."


def group_sentence(g: Group, vocab: Vocabulary) -> str:
    cat = vocab[g.category_id]
    where = "across the image" if g.cell == "whole image" else f"at the {g.cell}"
    if g.count == 1:
        return f"The <p> {g.tag} </p> [SEG] is a single {cat.display} {where}."
    return f"The <p> {g.tag} </p> [SEG] are a group of {g.count} {cat.plural} {where}."


def assemble(holistic_text: str, instance_texts: list[str], group_texts: list[str]) -> str:
    """The deterministic merge: holistic, then instance, then group sentences (also the LMM merge's fallback)."""
    return " ".join(t.strip() for t in [holistic_text, *instance_texts, *group_texts] if t.strip())


def draft(plan: PatchPlan, vocab: Vocabulary) -> dict:
    """All tier texts and the merged description of one plan."""
    h = holistic(plan, vocab)
    inst = {o.tag: instance_sentence(o) for o in sorted(plan.instances, key=lambda o: o.mark)}
    grp = {g.tag: group_sentence(g, vocab) for g in plan.groups}
    return {"holistic": h, "instances": inst, "groups": grp,
            "description": assemble(h, list(inst.values()), list(grp.values()))}
