"""One patch's annotation plan: which objects are key instances (marked, tagged) and which are grouped.

The holistic annotation needs nothing planned beyond the patch itself; the instance annotation's objects get
set-of-marks numbers and tags (`tennis court-1`, annotations/instance.py); the rest become groups with union
masks, counts and quantity words (`small vehicles-2`, annotations/group.py). The patch filters decide, before
and after, whether the patch is kept at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.contracts.categories import Vocabulary
from pipeline.contracts.config import FilterConfig, PlanConfig
from pipeline.contracts.records import Group, Mark, PlannedObject

from annotations.group import make_groups
from annotations.instance import assign_tiers, mark_instances


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
    """Pick the key instances, mark and tag them, and bucket every other object into groups."""
    objects = [c.obj for c in clipped]
    chosen = assign_tiers(objects, vocab, cfg.tiers)
    crops = {c.obj.object_id: (c.crop, (c.x0, c.y0)) for c in clipped}
    marks = mark_instances(chosen, crops, (height, width), vocab, cfg.marks)
    groups = make_groups([o for o in objects if o.tier == "group"], vocab, cfg.tiers, width, height)
    return objects, groups, marks
