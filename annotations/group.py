"""The group annotation (GeoPixel, figure 3): one sentence per bucket of small or dense same-category objects.

Small or dense objects (vehicles, ships, storage tanks, ...) are not marked one by one: every object the
instance rule (annotations/instance.py) leaves out is a group member. Members are bucketed per category by the
cell of their centroid in a grid (1x2, 2x1, 2x2 or 3x3, by count and spread, or fixed by `TierRule`); a
group's mask is the union of its members and its tag (`small vehicles-2`) links its phrase to that mask. The
LMM is asked, with the paper's prompt, for "{cluster_info} {category_name} at the {pos}" on the plain patch;
the template drafter writes a sentence from the count and the cell instead.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from prompts import Template
from pipeline.contracts import masks
from pipeline.contracts.categories import Vocabulary
from pipeline.contracts.config import TierRule
from pipeline.contracts.records import Group, PlannedObject

from annotations.ask import SENTENCE, Ask, object_schema
from annotations.priors import POSITION_WORDS, grid_cell, position_word, quantity_word

GRID_SHAPES = {"1x1": (1, 1), "1x2": (1, 2), "2x1": (2, 1), "2x2": (2, 2), "3x3": (3, 3)}  # rows, cols
_CELL_WORDS = {
    (1, 1): [["whole image"]],
    (1, 2): [["left", "right"]],
    (2, 1): [["top"], ["bottom"]],
    (2, 2): [["top left", "top right"], ["bottom left", "bottom right"]],
    (3, 3): [list(r) for r in POSITION_WORDS],
}


@dataclass
class Bucket:
    """One grid cell's members of one category: a group before it has a mask and a tag."""

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


def make_groups(members: list[PlannedObject], vocab: Vocabulary, rule: TierRule, width: int, height: int) -> list[Group]:
    """The patch's groups, numbered 1..G: union mask, tag per category, area-weighted position, count words.

    Sets `group_id` on each member (and `tier`/`drop_reason` on members of cells too small to keep).
    """
    groups: list[Group] = []
    tag_counts: Counter[int] = Counter()
    for bucket in bucket_groups(members, rule, width, height):
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
                quantity=quantity_word(len(bucket.members), rule.quantity_words),
                member_ids=[m.object_id for m in bucket.members],
                rle=rle,
                bbox=masks.bbox(rle),
                area=masks.area(rle),
            )
        )
    return groups


def group_ask(g: Group, t: Template) -> Ask:
    """The group request (the paper's): the plain patch, a reply `{"sentence": ...}`."""
    prompt = t.render(cluster_info=g.quantity, category_name=g.category if g.count == 1 else _plural(g), pos=g.position,
                      count=g.count, cell=g.cell)
    return Ask("group", g.tag, prompt, object_schema({"sentence": SENTENCE}), "patch", 96)


def _plural(g: Group) -> str:
    return g.tag.rsplit("-", 1)[0]


def group_sentence(g: Group, vocab: Vocabulary) -> str:
    """The template's sentence: how many of what, in which cell."""
    cat = vocab[g.category_id]
    where = "across the image" if g.cell == "whole image" else f"at the {g.cell}"
    if g.count == 1:
        return f"The <p> {g.tag} </p> [SEG] is a single {cat.display} {where}."
    return f"The <p> {g.tag} </p> [SEG] are a group of {g.count} {cat.plural} {where}."
