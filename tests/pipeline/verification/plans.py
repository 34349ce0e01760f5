"""Plans built from a few stated facts, for the text-check tests and the benchmark: an 800 px patch whose objects sit
where their position words say (or in the box given)."""

from __future__ import annotations

from pipeline.contracts.categories import ISAID
from pipeline.contracts.records import Group, PatchPlan, PlannedObject, Window

SIDE = 800
_CELL = {w: (r, c) for r, row in enumerate((("top left", "top", "top right"), ("left", "center", "right"),
                                            ("bottom left", "bottom", "bottom right"))) for c, w in enumerate(row)}


def category_id(display: str) -> int:
    return next(c.id for c in ISAID.categories if c.display == display)


def box_at(position: str, size: float = 60.0) -> tuple[float, float, float, float]:
    """A box of `size` px centred in the position word's cell."""
    r, c = _CELL[position]
    cx, cy = (c + 0.5) * SIDE / 3, (r + 0.5) * SIDE / 3
    return (cx - size / 2, cy - size / 2, size, size)


def planned(oid: int, category: str, position: str, bbox=None, tier: str = "group", tag: str | None = None,
            mark: int | None = None) -> PlannedObject:
    x, y, w, h = bbox or box_at(position)
    return PlannedObject(
        object_id=oid, category_id=category_id(category), category=category, rle={"size": [SIDE, SIDE], "counts": ""},
        bbox=(x, y, w, h), area=int(w * h), centroid=(x + w / 2, y + h / 2), position=position, size="medium",
        area_fraction=w * h / SIDE**2, orientation=None, angle=None, elongation=1.0, truncated=False, tier=tier,
        mark=mark, tag=tag)


def plan_of(objects: list[PlannedObject], groups: list[Group] = ()) -> PatchPlan:
    return PatchPlan("P0001", "val", "P0001", 1, "P0001.png", Window(0, 0, SIDE, SIDE), SIDE, SIDE, None, None, None,
                     list(objects), list(groups), [], "hash")


def instance_plan(category: str, position: str, bbox=None, others=()) -> tuple[PatchPlan, str]:
    """A plan with one marked instance (tag `<category>-1`) and other objects [(category, position)]; its tag."""
    tag = f"{category}-1"
    objs = [planned(1, category, position, bbox, "instance", tag, 1)]
    objs += [planned(10 + i, cat, pos) for i, (cat, pos) in enumerate(others)]
    return plan_of(objs), tag


def group_plan(category: str, count: int, grid: str, cell: str, position: str, bbox=None, others=()) -> tuple[PatchPlan, str]:
    """A plan with one group of `count` members (tag `<plural>-1`) and other objects; its tag."""
    cat = ISAID[category_id(category)]
    x, y, w, h = bbox or box_at(position, 120)
    members = [planned(100 + k, category, position, (x, y, w, h)) for k in range(count)]
    g = Group(1, f"{cat.plural}-1", cat.id, category, grid, cell, position, count, "", [m.object_id for m in members],
              {"size": [SIDE, SIDE], "counts": ""}, (x, y, w, h), int(w * h))
    objs = members + [planned(10 + i, c, p) for i, (c, p) in enumerate(others)]
    return plan_of(objs, [g]), g.tag


def scene_plan(objects) -> PatchPlan:
    """A plan of [(category, position)] or [(category, position, n)] objects, no tags (holistic texts)."""
    objs, oid = [], 1
    for spec in objects:
        cat, pos, n = (*spec, 1) if len(spec) == 2 else spec
        for _ in range(n):
            objs.append(planned(oid, cat, pos))
            oid += 1
    return plan_of(objs)
