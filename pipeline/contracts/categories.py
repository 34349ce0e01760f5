"""The category vocabulary: iSAID's 15 classes, their colours, display words and default tier.

A generic COCO dataset maps its own categories onto a vocabulary through the run config
(`SourceConfig.category_map`), so everything downstream speaks one set of names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Tier = Literal["instance", "group"]


@dataclass(frozen=True)
class Category:
    id: int
    name: str  # the name in the source JSON, e.g. "Small_Vehicle"
    display: str  # what prompts and tags say, e.g. "small vehicle"
    plural: str  # e.g. "small vehicles"
    color: tuple[int, int, int]  # RGB of the iSAID class-colour PNG
    tier: Tier  # default tier; the TierRule can override it


ISAID_CATEGORIES: tuple[Category, ...] = (
    Category(1, "ship", "ship", "ships", (0, 0, 63), "group"),
    Category(2, "storage_tank", "storage tank", "storage tanks", (0, 63, 63), "group"),
    Category(3, "baseball_diamond", "baseball diamond", "baseball diamonds", (0, 63, 0), "instance"),
    Category(4, "tennis_court", "tennis court", "tennis courts", (0, 63, 127), "instance"),
    Category(5, "basketball_court", "basketball court", "basketball courts", (0, 63, 191), "instance"),
    Category(6, "Ground_Track_Field", "ground track field", "ground track fields", (0, 63, 255), "instance"),
    Category(7, "Bridge", "bridge", "bridges", (0, 127, 63), "instance"),
    Category(8, "Large_Vehicle", "large vehicle", "large vehicles", (0, 127, 127), "group"),
    Category(9, "Small_Vehicle", "small vehicle", "small vehicles", (0, 0, 127), "group"),
    Category(10, "Helicopter", "helicopter", "helicopters", (0, 0, 191), "instance"),
    Category(11, "Swimming_pool", "swimming pool", "swimming pools", (0, 0, 255), "group"),
    Category(12, "Roundabout", "roundabout", "roundabouts", (0, 191, 127), "instance"),
    Category(13, "Soccer_ball_field", "soccer ball field", "soccer ball fields", (0, 127, 191), "instance"),
    Category(14, "plane", "plane", "planes", (0, 127, 255), "instance"),
    Category(15, "Harbor", "harbor", "harbors", (0, 100, 155), "instance"),
)


class Vocabulary:
    """Lookup by id, source name or class colour."""

    def __init__(self, categories: tuple[Category, ...] | list[Category]):
        self.categories = tuple(categories)
        self.by_id = {c.id: c for c in self.categories}
        self.by_name = {c.name: c for c in self.categories}
        self.by_color = {c.color: c for c in self.categories}
        if len(self.by_id) != len(self.categories):
            raise ValueError("category ids must be unique")

    def __contains__(self, cat_id: int) -> bool:
        return cat_id in self.by_id

    def __getitem__(self, cat_id: int) -> Category:
        return self.by_id[cat_id]

    def lookup(self, key: int | str) -> Category | None:
        """Find a category by id, source name or display word (case-insensitive for names)."""
        if isinstance(key, int):
            return self.by_id.get(key)
        low = key.lower().replace("_", " ")
        for c in self.categories:
            if low in (c.name.lower().replace("_", " "), c.display, c.plural):
                return c
        return None


ISAID = Vocabulary(ISAID_CATEGORIES)
