"""The group annotation (GeoPixel, figure 3): one sentence per bucket of small or dense same-category objects.

Small or dense objects (vehicles, ships, storage tanks, ...) are not marked one by one: every object the
instance rule (annotations/instance.py) leaves out is a group member. Members are bucketed per category by the
cell of their centroid in a grid (one group unless many and spread, by `TierRule.cell_members`; by count in the
cells preset; or fixed by `TierRule`), and a category too few to group is dropped (`min_group_size`); a
group's mask is the union of its members and its tag (`small vehicles-2`) links its phrase to that mask. The
LMM is asked, with the paper's prompt, for "{cluster_info} {category_name} at the {pos}" on the plain patch;
the template drafter writes a sentence from the count and where the members are instead.
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
from annotations.priors import (POSITION_WORDS, SIZE_NAMED, capital, grid_cell, number, oriented, percent, phrase,
                                pick, position_word, quantity_word)

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
    """The grid for one category's members: the rule's, else by density (`cell_members`) or, without it, by count."""
    if rule.group_grid != "auto":
        return rule.group_grid
    if rule.cell_members is None:
        return count_grid(members, width, height)
    return density_grid(members, rule.cell_members, width, height)


def _wider_split(members: list[PlannedObject], width: int, height: int) -> list[str]:
    """1x2 and 2x1, the one along the members' wider spread (relative to the patch sides) first."""
    xs = [m.centroid[0] / width for m in members]
    ys = [m.centroid[1] / height for m in members]
    return ["1x2", "2x1"] if (max(xs) - min(xs)) >= (max(ys) - min(ys)) else ["2x1", "1x2"]


def count_grid(members: list[PlannedObject], width: int, height: int) -> str:
    """The cells preset's grid, by count alone: 1x1 up to 3 members, 1x2/2x1 up to 12, 2x2 up to 40, else 3x3."""
    n = len(members)
    if n <= 3:
        return "1x1"
    if n <= 12:
        return _wider_split(members, width, height)[0]
    if n <= 40:
        return "2x2"
    return "3x3"


def cell_counts(members: list[PlannedObject], grid: str, width: int, height: int) -> Counter[tuple[int, int]]:
    """How many members have their centroid in each (row, col) cell of a grid."""
    rows, cols = GRID_SHAPES[grid]
    return Counter(grid_cell(m.centroid[0], m.centroid[1], width, height, cols, rows) for m in members)


def density_grid(members: list[PlannedObject], cell_members: int, width: int, height: int) -> str:
    """Of 1x2/2x1 (the wider spread first) and 2x2, the grid whose every occupied cell holds at least
    `cell_members` members and which has the most such cells (a tie keeps the coarser); else 1x1.

    GeoPixelD describes dense objects in few large groups (about 33 objects a group phrase, "more than hundred"
    in one): a category is split only when it is many and spread, so that every part is itself a crowd, never
    a stray few, and into at most four parts (3x3 stays a fixed `group_grid`)."""
    best, parts = "1x1", 1
    if len(members) < 2 * cell_members:
        return best
    for grid in [*_wider_split(members, width, height), "2x2"]:
        counts = cell_counts(members, grid, width, height)
        if len(counts) > parts and min(counts.values()) >= cell_members:
            best, parts = grid, len(counts)
    return best


def bucket_groups(members: list[PlannedObject], rule: TierRule, width: int, height: int) -> list[Bucket]:
    """Bucket same-category members by the cell of their centroid; cells under min_group_size are dropped.

    A dropped object keeps `tier: dropped` and says why in `drop_reason`: with one cell for the whole patch, its
    category had too few objects to group; otherwise its cell had."""
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
                reason = (f"fewer than {rule.min_group_size} objects of its category to group" if grid == "1x1"
                          else f"group cell has fewer than {rule.min_group_size} members")
                for o in cell_members:
                    o.tier, o.drop_reason = "dropped", reason
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


_VERBS = {"small vehicle": "parked", "large vehicle": "parked", "plane": "parked", "helicopter": "parked",
          "ship": "moored", "storage tank": "standing", "swimming pool": "scattered"}
_ROWS, _COLS = ("top", "middle", "bottom"), ("left", "middle", "right")


def group_place(g: Group, members: list[PlannedObject], width: int, height: int) -> str:
    """Where a group is, in words its members agree with: its grid cell, else where its members' centroids fall
    on the 3x3 grid (one cell, mostly one cell, one row or column, or across the image)."""
    if g.cell != "whole image":
        return f"at the {g.cell}"
    cells = Counter(grid_cell(m.centroid[0], m.centroid[1], width, height, 3, 3) for m in members)
    (row, col), n = min(cells.items(), key=lambda kv: (-kv[1], kv[0]))
    if len(cells) == 1:
        return f"at the {POSITION_WORDS[row][col]}"
    if n >= 0.7 * len(members):
        return f"mostly at the {POSITION_WORDS[row][col]}"
    rows, cols = {r for r, _ in cells}, {c for _, c in cells}
    if len(rows) == 1:
        return f"along the {_ROWS[row]} of the image"
    if len(cols) == 1:
        return "down the middle of the image" if col == 1 else f"along the {_COLS[col]} side of the image"
    return "across the image"


def _group_details(members: list[PlannedObject]) -> list[str]:
    """What most members share (orientation) and how many the border cuts, in agreeing words."""
    out = []
    orients = Counter(m.orientation for m in members if m.orientation)
    if orients:
        word, n = min(orients.items(), key=lambda kv: (-kv[1], kv[0]))
        if n == len(members):
            out.append(f"all {oriented(word)}")
        elif n >= 0.7 * len(members):
            out.append(f"mostly {oriented(word)}")
    cut = sum(m.truncated for m in members)
    if cut:
        out.append(("all of them" if cut == len(members) else f"{number(cut)} of them") + " cut by the image border")
    return out


def _sizes(members: list[PlannedObject]) -> str:
    """`most of them small`: the size word most members share (of at least 70%), or ""."""
    sizes = Counter(m.size for m in members if m.size)
    if not sizes:
        return ""
    word, n = min(sizes.items(), key=lambda kv: (-kv[1], kv[0]))
    return f"all {word}" if n == len(members) else f"most of them {word}" if n >= 0.7 * len(members) else ""


def packing(members: list[PlannedObject]) -> str:
    """`closely packed` or `loosely scattered`: how much of the members' bounding box they fill, or ""."""
    x0 = min(m.bbox[0] for m in members)
    y0 = min(m.bbox[1] for m in members)
    x1 = max(m.bbox[0] + m.bbox[2] for m in members)
    y1 = max(m.bbox[1] + m.bbox[3] for m in members)
    fill = sum(m.area for m in members) / max((x1 - x0) * (y1 - y0), 1.0)
    return "closely packed" if fill >= 0.15 else "loosely scattered" if fill < 0.03 else ""


_GROUP = ("{Quantity} {tag} are {verb} {where}{count}{tail}.", "There are {n} {tag} {verb} {where}{tail}.")


def group_sentence(g: Group, vocab: Vocabulary, members: list[PlannedObject], width: int, height: int,
                   key: str = "", level: int = 0) -> str:
    """The template's sentence for a group: how many of what, where its members are (`group_place`).

    Its tag is plural (`planes-1`), so its words are plural too; a group of one (the cells preset makes them)
    is said as a group holding one object. Every level says the exact count and the place (the merge check
    keeps them); level 0 adds packing, shared size and orientation, border cuts and the share of the patch,
    level 1 leaves those out, level 2 is the count, tag and place only. Wording varies with `key`."""
    cat = vocab[g.category_id]
    where = group_place(g, members, width, height)
    tag = phrase(g.tag)
    if g.count == 1:
        return f"The {tag} group {where} holds only one {cat.display}."
    if level >= 2:
        return f"There are {number(g.count)} {tag} {where}."
    sizes = "" if cat.display.split(" ", 1)[0] in SIZE_NAMED else _sizes(members)
    details = ([w for w in [packing(members), sizes] if w] + _group_details(members)
               + [f"together covering {percent(g.area / (width * height))} of the image"]) if level == 0 else []
    tail = ", " + ", ".join(details) if details else ""
    count = f", {number(g.count)} in all" if g.quantity != number(g.count) else ""
    template = pick(_GROUP, key, f"group {g.tag}")
    return template.format(Quantity=capital(g.quantity), tag=tag, verb=_VERBS.get(cat.display, "located"),
                           where=where, count=count, tail=tail, n=number(g.count))
