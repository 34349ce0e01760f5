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
from annotations.priors import (SIZE_NAMED, a, counted, listing, number, oriented, percent, phrase, phrase_list, pick,
                                sized)

Crop = tuple[np.ndarray, tuple[int, int]]  # an object's mask crop and the patch px of its top-left pixel


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
    most max_instances_per_category such objects in the patch, and (`lone_objects: instance`) the objects of
    at least that area of a category too few to group (`lone_candidates`); the largest max_marks of them are
    returned. Everything else is a group member.
    """
    per_cat: dict[int, list[PlannedObject]] = defaultdict(list)
    for obj in objects:
        obj.tier = "group"
        if category_tier(vocab[obj.category_id], rule) == "instance" and obj.area >= rule.min_instance_area:
            per_cat[obj.category_id].append(obj)
    candidates = [o for objs in per_cat.values() if len(objs) <= rule.max_instances_per_category for o in objs]
    if rule.lone_objects == "instance":
        candidates += lone_candidates(objects, {o.object_id for o in candidates}, rule)
    candidates.sort(key=lambda o: (-o.area, o.object_id))
    chosen = candidates[: rule.max_marks]
    for obj in chosen:
        obj.tier = "instance"
    return chosen


def lone_candidates(objects: list[PlannedObject], chosen: set[int], rule: TierRule) -> list[PlannedObject]:
    """Objects left out of `chosen` whose category has fewer than min_group_size of them, big enough to mark.

    Too few to form a group, such an object is described on its own when a mark fits it, instead of becoming
    a "group" of one; smaller ones are dropped when the groups are made (annotations/group.py). A category
    with more of them than max_instances_per_category stays too dense to mark (and is dropped)."""
    rest: dict[int, list[PlannedObject]] = defaultdict(list)
    for o in objects:
        if o.object_id not in chosen:
            rest[o.category_id].append(o)
    return [o for objs in rest.values() if len(objs) < rule.min_group_size
            and len(objs) <= rule.max_instances_per_category for o in objs if o.area >= rule.min_instance_area]


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
    """One instance's template sentence (its tier text): size, category and position, then orientation, border cut."""
    extra = []
    if o.orientation:
        extra.append(oriented(o.orientation))
    if o.truncated:
        extra.append("partly cut by the image border")
    tail = (", " + ", ".join(extra)) if extra else ""
    return f"The {phrase(o.tag)} is {a(sized(o.size, o.category))} at the {o.position}{tail}."


def _where(objs: list[PlannedObject]) -> str:
    """Where same-category instances are, in the order of their tags."""
    positions = [o.position for o in objs]
    distinct = list(dict.fromkeys(positions))
    if len(distinct) == 1:
        return f"at the {positions[0]}"
    if len(distinct) == len(objs) <= 3:
        return f"at the {listing(positions)} respectively"
    if len(distinct) <= 2:
        return f"at the {listing(distinct)}"
    return "spread across the image"


def _details(objs: list[PlannedObject]) -> list[str]:
    """What same-category instances share (orientation) and how many the border cuts, in agreeing words."""
    out, n = [], len(objs)
    orients = {o.orientation for o in objs}
    if len(orients) == 1 and None not in orients:
        out.append({1: "", 2: "both "}.get(n, "all ") + oriented(orients.pop()))
    cut = sum(o.truncated for o in objs)
    if cut:
        who = "" if n == 1 else "both " if cut == n == 2 else "all " if cut == n else f"{number(cut)} of them "
        out.append(who + "partly cut by the image border")
    return out


def nearby(objs: list[PlannedObject], context: list[PlannedObject], plural: dict[int, str], radius: float) -> str:
    """`near 12 small vehicles`: the commonest other category within `radius` px of these objects, or ""."""
    ids = {o.object_id for o in objs}
    cats = {o.category_id for o in objs}
    close: Counter[int] = Counter()
    singular: dict[int, str] = {}
    for c in context:
        if c.object_id in ids or c.category_id in cats:
            continue
        if any((c.centroid[0] - o.centroid[0]) ** 2 + (c.centroid[1] - o.centroid[1]) ** 2 <= radius**2 for o in objs):
            close[c.category_id] += 1
            singular[c.category_id] = c.category
    if not close:
        return ""
    cat = min(close, key=lambda k: (-close[k], k))
    return f"near {counted(close[cat], singular[cat], plural[cat])}"


def _largest_of(members: list[PlannedObject], plural: str) -> str:
    """Which of several same-category instances is the largest, by its place (its tag is already said)."""
    big = max(members, key=lambda o: (o.area, -o.mark))
    share = f", covering {percent(big.area_fraction)} of the image" if big.area_fraction >= 0.01 else ""
    return f"The largest of the {plural} is the one at the {big.position}{share}."


_SHARED = ("{tags} are {sizes} {where}{tail}.", "{tags} are {count} {sizes} lying {where}{tail}.",
           "{tags} , {count} {sizes}, are seen {where}{tail}.")
_SINGLE = ("The {tag} at the {pos} is {a_cat}{tail}.", "The {tag} is {a_cat} at the {pos}{tail}.",
           "At the {pos} lies the {tag} , {a_cat}{tail}.")


def _single(o: PlannedObject, tail: str, key: str, level: int) -> str:
    """The sentence of a category's only instance; a large one also says its share of the patch."""
    if level >= 2:
        return f"The {phrase(o.tag)} is {a(o.category)} at the {o.position}."
    if level == 0 and o.area_fraction >= 0.05:
        tail = f", covering {percent(o.area_fraction)} of the image" + tail
    return pick(_SINGLE, key, f"instance {o.tag}").format(tag=phrase(o.tag), pos=o.position,
                                                          a_cat=a(sized(o.size, o.category)), tail=tail)


def _sizes(members: list[PlannedObject], plural: str) -> str:
    """`small tennis courts` when they share a size word, else `differently sized tennis courts`."""
    sizes = {o.size for o in members}
    if len(sizes) == 1:
        return sized(sizes.pop(), plural)
    return plural if plural.split(" ", 1)[0] in SIZE_NAMED else f"differently sized {plural}"


def _shared(members: list[PlannedObject], plural: str, tail: str, key: str, level: int) -> list[str]:
    """One sentence for several same-category instances (their phrases listed as GeoPixelD does), and at level
    0 a second naming where the largest is, when they are not all at one place."""
    tags = "The " + phrase_list([o.tag for o in members])
    if level >= 2:
        return [f"{tags} are {plural} {_where(members)}."]
    template = pick(_SHARED, key, f"instances {plural}")
    out = [template.format(tags=tags, sizes=_sizes(members, plural), count=number(len(members)),
                           where=_where(members), tail=tail)]
    if level == 0 and len({o.position for o in members}) > 1:
        out.append(_largest_of(members, plural))
    return out


def instance_sentences(objs: list[PlannedObject], plural: dict[int, str], key: str, level: int = 0,
                       context: list[PlannedObject] = (), radius: float = 120.0) -> list[str]:
    """The caption's instance sentences: one per category, its instances sharing it (GeoPixelD: "The <p> tennis
    court-2 </p> [SEG] , <p> tennis court-3 </p> [SEG] , and ... feature ..."), in mark order.

    `plural`: category id -> plural display word; `context`: the patch's objects, for what lies within `radius`
    px. Level 0 says size, position, shared orientation, border cuts and neighbours; 1 leaves out orientation,
    cuts and neighbours; 2 names the category and position only. Wording varies with `key`."""
    by_cat: dict[int, list[PlannedObject]] = defaultdict(list)
    for o in sorted(objs, key=lambda o: o.mark):
        by_cat[o.category_id].append(o)
    out = []
    for cat_id, members in by_cat.items():
        details = [*_details(members), nearby(members, list(context), plural, radius)] if level == 0 else []
        tail = "".join(f", {d}" for d in details if d)
        if len(members) == 1:
            out.append(_single(members[0], tail, key, level))
        else:
            out += _shared(members, plural[cat_id], tail, key, level)
    return out
