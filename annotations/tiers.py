"""The instance/group split and the grouping of group-tier objects into grid cells.

Pure functions over `PlannedObject`s; the rule itself lives in `TierRule` (config) so that it is explicit,
documented and recorded in each plan's config hash.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from pipeline.contracts.categories import Category, Vocabulary
from pipeline.contracts.config import TierRule
from pipeline.contracts.records import PlannedObject

from annotations.priors import POSITION_WORDS, grid_cell

GRID_SHAPES = {"1x1": (1, 1), "1x2": (1, 2), "2x1": (2, 1), "2x2": (2, 2), "3x3": (3, 3)}  # rows, cols
_CELL_WORDS = {
    (1, 1): [["whole image"]],
    (1, 2): [["left", "right"]],
    (2, 1): [["top"], ["bottom"]],
    (2, 2): [["top left", "top right"], ["bottom left", "bottom right"]],
    (3, 3): [list(r) for r in POSITION_WORDS],
}


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


@dataclass
class Bucket:
    category_id: int
    grid: str
    cell: str
    members: list[PlannedObject]


def choose_grid(members: list[PlannedObject], rule: TierRule, width: int, height: int) -> str:
    """The grid for one category's members: the rule's, or by count and spread when it is `auto`."""
    if rule.group_grid != "auto":
        return rule.group_grid
    n = len(members)
    if n <= 3:
        return "1x1"
    if n <= 12:
        xs = [m.centroid[0] / width for m in members]
        ys = [m.centroid[1] / height for m in members]
        return "1x2" if (max(xs) - min(xs)) >= (max(ys) - min(ys)) else "2x1"
    if n <= 40:
        return "2x2"
    return "3x3"


def bucket_groups(members: list[PlannedObject], rule: TierRule, width: int, height: int) -> list[Bucket]:
    """Bucket same-category members by the cell of their centroid; cells under min_group_size are dropped."""
    by_cat: dict[int, list[PlannedObject]] = defaultdict(list)
    for m in members:
        by_cat[m.category_id].append(m)
    buckets: list[Bucket] = []
    for cat_id in sorted(by_cat):
        objs = by_cat[cat_id]
        grid = choose_grid(objs, rule, width, height)
        rows, cols = GRID_SHAPES[grid]
        cells: dict[tuple[int, int], list[PlannedObject]] = defaultdict(list)
        for o in objs:
            cells[grid_cell(o.centroid[0], o.centroid[1], width, height, cols, rows)].append(o)
        for (r, c) in sorted(cells):
            cell_members = sorted(cells[(r, c)], key=lambda o: o.object_id)
            if len(cell_members) < rule.min_group_size:
                for o in cell_members:
                    o.tier, o.drop_reason = "dropped", f"group cell has fewer than {rule.min_group_size} members"
                continue
            buckets.append(Bucket(cat_id, grid, _CELL_WORDS[(rows, cols)][r][c], cell_members))
    return buckets
