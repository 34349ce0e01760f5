"""One patch's annotation plan: tiers, marks, groups and tags from its clipped objects.

The holistic tier needs nothing planned beyond the patch itself; the instance tier gets set-of-marks numbers
and tags (`tennis court-1`); the group tier gets union masks, counts and quantity words (`small vehicles-2`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from pipeline.contracts import masks
from pipeline.contracts.categories import Vocabulary
from pipeline.contracts.config import FilterConfig, PlanConfig
from pipeline.contracts.records import Group, Mark, PlannedObject

from annotations.marks import place_marks
from annotations.priors import position_word, quantity_word
from annotations.tiers import assign_tiers, bucket_groups


@dataclass
class Clipped:
    """A planned object with its bounding-box crop, kept while planning (marks need pixels)."""

    obj: PlannedObject
    crop: np.ndarray
    x0: int
    y0: int


def filter_reason(objects: list[PlannedObject], n_instances: int, f: FilterConfig, width: int, height: int) -> str | None:
    """Why a patch is dropped, or None to keep it. Empty patches are always dropped."""
    if not objects:
        return "empty"
    if len(objects) < f.min_objects:
        return f"fewer than {f.min_objects} objects"
    if f.max_objects is not None and len(objects) > f.max_objects:
        return f"more than {f.max_objects} objects"
    if f.min_object_fraction > 0 and sum(o.area for o in objects) / (width * height) < f.min_object_fraction:
        return f"objects cover less than {f.min_object_fraction:.3g} of the patch"
    if f.require_instance and n_instances == 0:
        return "no key instance"
    if f.drop_all_truncated and all(o.truncated for o in objects):
        return "every object is cut by the border"
    return None


def plan_objects(clipped: list[Clipped], vocab: Vocabulary, cfg: PlanConfig, width: int, height: int
                 ) -> tuple[list[PlannedObject], list[Group], list[Mark]]:
    """Assign tiers, place marks on the key instances and bucket the rest into groups."""
    by_id = {c.obj.object_id: c for c in clipped}
    objects = [c.obj for c in clipped]
    chosen = assign_tiers(objects, vocab, cfg.tiers)
    marks: list[Mark] = []
    while chosen:
        marks, unplaced = place_marks(
            [(k + 1, o.object_id, by_id[o.object_id].crop, (by_id[o.object_id].x0, by_id[o.object_id].y0))
             for k, o in enumerate(chosen)],
            (height, width),
            cfg.marks,
        )
        if not unplaced:
            break
        for oid in unplaced:  # no room for a mark: it joins the group tier, numbers stay 1..K
            by_id[oid].obj.tier = "group"
        gone = set(unplaced)
        chosen = [o for o in chosen if o.object_id not in gone]
    tag_counts: Counter[int] = Counter()
    for obj, mark in zip(chosen, marks):
        tag_counts[obj.category_id] += 1
        obj.mark, obj.tag = mark.number, f"{vocab[obj.category_id].display}-{tag_counts[obj.category_id]}"
    groups = make_groups([o for o in objects if o.tier == "group"], vocab, cfg, width, height)
    return objects, groups, marks


def make_groups(members: list[PlannedObject], vocab: Vocabulary, cfg: PlanConfig, width: int, height: int) -> list[Group]:
    groups: list[Group] = []
    tag_counts: Counter[int] = Counter()
    for bucket in bucket_groups(members, cfg.tiers, width, height):
        cat = vocab[bucket.category_id]
        tag_counts[cat.id] += 1
        gid = len(groups) + 1
        rle = masks.union([m.rle for m in bucket.members])
        total = sum(m.area for m in bucket.members)
        cx = sum(m.centroid[0] * m.area for m in bucket.members) / total
        cy = sum(m.centroid[1] * m.area for m in bucket.members) / total
        for m in bucket.members:
            m.group_id = gid
        groups.append(
            Group(
                group_id=gid,
                tag=f"{cat.plural}-{tag_counts[cat.id]}",
                category_id=cat.id,
                category=cat.display,
                grid=bucket.grid,
                cell=bucket.cell,
                position=position_word(cx, cy, width, height),
                count=len(bucket.members),
                quantity=quantity_word(len(bucket.members), cfg.tiers.quantity_words),
                member_ids=[m.object_id for m in bucket.members],
                rle=rle,
                bbox=masks.bbox(rle),
                area=masks.area(rle),
            )
        )
    return groups
