"""The instance annotation (GeoPixel, figure 3): one sentence per key object, asked on a set-of-marks image.

Key objects are the large or distinct ones (courts, fields, planes, bridges, harbors, roundabouts, ...). The
paper does not publish the rule that picks them; here it is `TierRule` (config), explicit and recorded in each
plan's config hash. Each key instance carries a set-of-marks number (annotations/marks.py) and a tag
(`tennis court-1`) that links its phrase to its mask. The LMM is asked, with the paper's prompt, for the
attributes of "the {category_name} at the {pos} that is marked with number {mark_number}", one request per
object or one per patch; the template drafter writes a sentence from the priors instead.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping

import numpy as np

from prompts import Template
from pipeline.contracts.categories import Category, Vocabulary
from pipeline.contracts.config import MarkConfig, TierRule
from pipeline.contracts.records import Mark, PlannedObject

from annotations.ask import SENTENCE, Ask, object_schema
from annotations.marks import place_marks

Crop = tuple[np.ndarray, tuple[int, int]]  # an object's mask crop and the patch px of its top-left pixel
_ORIENTATION = {"horizontal": "oriented horizontally", "vertical": "oriented vertically"}


def category_tier(cat: Category, rule: TierRule) -> str:
    """A category's tier: the rule's explicit lists first, the category default otherwise."""
    names = {cat.name, cat.display}
    if rule.instance_categories is not None and names & set(rule.instance_categories):
        return "instance"
    if rule.group_categories is not None and names & set(rule.group_categories):
        return "group"
    if rule.instance_categories is not None and rule.group_categories is not None:
        return "group"  # listed nowhere while both lists are given: group it rather than mark it
    return cat.tier


def assign_tiers(objects: list[PlannedObject], vocab: Vocabulary, rule: TierRule) -> list[PlannedObject]:
    """Set `tier` on every object; returns the instance candidates, largest first.

    Instance candidates are instance-tier objects with area >= min_instance_area in a category that has at
    most max_instances_per_category such objects in the patch; the largest max_marks of them are returned.
    Everything else is a group member.
    """
    per_cat: dict[int, list[PlannedObject]] = defaultdict(list)
    for obj in objects:
        obj.tier = "group"
        if category_tier(vocab[obj.category_id], rule) == "instance" and obj.area >= rule.min_instance_area:
            per_cat[obj.category_id].append(obj)
    candidates = [o for objs in per_cat.values() if len(objs) <= rule.max_instances_per_category for o in objs]
    candidates.sort(key=lambda o: (-o.area, o.object_id))
    chosen = candidates[: rule.max_marks]
    for obj in chosen:
        obj.tier = "instance"
    return chosen


def mark_instances(chosen: list[PlannedObject], crops: Mapping[int, Crop], patch_hw: tuple[int, int],
                   vocab: Vocabulary, cfg: MarkConfig) -> list[Mark]:
    """Number the candidates 1..K in order and tag them per category (`tennis court-1`); returns their marks.

    `chosen` is `assign_tiers`' result (largest first, so big objects take their best spot); `crops` holds
    each one's mask crop by object id. A candidate with no room for a mark joins the group tier and the rest
    are numbered again, so numbers stay 1..K. Sets `tier`, `mark` and `tag` on the objects.
    """
    marks: list[Mark] = []
    while chosen:
        marks, unplaced = place_marks(
            [(k + 1, o.object_id, *crops[o.object_id]) for k, o in enumerate(chosen)], patch_hw, cfg)
        if not unplaced:
            break
        gone = set(unplaced)
        for o in chosen:
            if o.object_id in gone:
                o.tier = "group"
        chosen = [o for o in chosen if o.object_id not in gone]
    tag_counts: Counter[int] = Counter()
    for obj, mark in zip(chosen, marks):
        tag_counts[obj.category_id] += 1
        obj.mark, obj.tag = mark.number, f"{vocab[obj.category_id].display}-{tag_counts[obj.category_id]}"
    return marks


def instance_ask(o: PlannedObject, t: Template) -> Ask:
    """The per-object request (the paper's): the set-of-marks image, a reply `{"sentence": ...}`."""
    prompt = t.render(category_name=o.category, pos=o.position, mark_number=o.mark, size=o.size,
                      orientation=o.orientation or "", border="cut by the image border" if o.truncated else "")
    return Ask("instance", o.tag, prompt, object_schema({"sentence": SENTENCE}), "som", 96)


def instance_batch_ask(objs: list[PlannedObject], t: Template) -> Ask:
    """One request for all of a patch's marked objects; the schema admits exactly their mark numbers."""
    lines = "\n".join(f"{o.mark}: the {o.category} at the {o.position}" for o in objs)
    item = object_schema({"mark": {"type": "integer", "enum": [o.mark for o in objs]}, "sentence": SENTENCE})
    schema = object_schema({"objects": {"type": "array", "items": item, "minItems": len(objs), "maxItems": len(objs)}})
    return Ask("instance", "", t.render(object_list=lines), schema, "som", 96 * len(objs))


def instance_sentence(o: PlannedObject) -> str:
    """The template's sentence: size, category and position, then orientation and border cut when known."""
    extra = []
    if o.orientation:
        extra.append(_ORIENTATION.get(o.orientation) or "running " + o.orientation.replace("diagonal", "diagonally", 1))
    if o.truncated:
        extra.append("partly cut by the image border")
    tail = (", " + ", ".join(extra)) if extra else ""
    return f"The <p> {o.tag} </p> [SEG] is a {o.size} {o.category} at the {o.position}{tail}."
