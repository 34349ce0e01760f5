"""Planned objects and patch plans for the annotation tests: only the fields a test names carry meaning."""

from __future__ import annotations

from pipeline.contracts.categories import ISAID
from pipeline.contracts.records import Group, PatchPlan, PlannedObject, Window

SHIP, TANK, COURT, BRIDGE, LV, CAR, POOL, PLANE, HARBOR = 1, 2, 4, 7, 8, 9, 11, 14, 15


def obj(oid: int, cat: int, area: int = 2500, cx: float = 400.0, cy: float = 400.0) -> PlannedObject:
    """A planned object; only id, category, area and centroid matter to the tier rule."""
    return PlannedObject(
        object_id=oid, category_id=cat, category=ISAID[cat].display, rle={"size": [800, 800], "counts": ""},
        bbox=(cx, cy, 1.0, 1.0), area=area, centroid=(cx, cy), position="", size="", area_fraction=area / 640000,
        orientation=None, angle=None, elongation=1.0, truncated=False,
    )


def patch_plan(objects: list[PlannedObject], groups: list[Group] = ()) -> PatchPlan:
    """An 800 px patch's plan holding these objects and groups (marks and paths left out)."""
    return PatchPlan("P0001", "val", "P0001", 1, "P0001.png", Window(0, 0, 800, 800), 800, 800, None, None, None,
                     list(objects), list(groups), [], "hash")
