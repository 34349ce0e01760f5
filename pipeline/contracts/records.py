"""Records that cross a stage: what a reader yields, and the plan each kept patch becomes.

Readers yield `SourceImage`s (image coordinates, nothing decoded); the planner turns one decoded image into
`PatchPlan`s (patch coordinates, masks as COCO RLE). Later stages (drafting, curation, training) key on
`PatchPlan.patch_id`, the tags and the object/group ids defined here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

ObjectTier = Literal["instance", "group", "dropped"]


@dataclass
class SourceObject:
    """One annotation in image coordinates. Exactly one of polygons / rle / instance_value is set."""

    ann_id: int
    category_id: int
    polygons: list[np.ndarray] | None = None  # each (N, 2) float64, x then y
    rle: dict | None = None  # full-image COCO RLE (generic COCO input with RLE segmentation)
    instance_value: int | None = None  # value in the instance-id PNG (R + 256 G + 65536 B)


@dataclass
class Window:
    """A patch window in source-image pixels, end exclusive."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


@dataclass
class SourceImage:
    """One image to tile, as a reader found it (nothing decoded yet)."""

    image_id: int
    name: str  # file stem, e.g. "P0003"
    path: Path  # resolved, checked to lie inside the dataset root
    rel_path: str  # as the dataset names it, relative to the root
    width: int | None  # from the annotation file; None when only the file knows
    height: int | None
    objects: list[SourceObject] = field(default_factory=list)
    id_mask_path: Path | None = None  # <name>_instance_id_RGB.png
    color_mask_path: Path | None = None  # <name>_instance_color_RGB.png
    pretiled: Window | None = None  # a devkit patch: its window in the parent image
    parent: str | None = None  # parent image name of a devkit patch
    untiled: bool = False  # planned as one patch as it is (devkit patches and the whole images it copied)
    annotations: str | None = None  # the annotation file its objects come from (named in quarantine reports)


@dataclass
class Georef:
    crs: str | None  # WKT
    transform: tuple[float, float, float, float, float, float] | None  # affine a, b, c, d, e, f


@dataclass
class PlannedObject:
    """An object clipped to a patch, with its spatial priors and its tier."""

    object_id: int  # source annotation id (or instance-PNG value)
    category_id: int
    category: str  # display word, e.g. "small vehicle"
    rle: dict  # COCO RLE over the patch: {"size": [h, w], "counts": str}
    bbox: tuple[float, float, float, float]  # x, y, w, h in patch pixels
    area: int  # mask pixels
    centroid: tuple[float, float]
    position: str  # 3x3 word: "top left" ... "bottom right"
    size: str  # word from PriorConfig.size_words
    area_fraction: float
    orientation: str | None  # for elongated objects: "horizontal", "vertical", "diagonal ..."
    angle: float | None  # long-axis angle in degrees, [0, 180), image coordinates
    elongation: float  # long side / short side of the rotated box
    truncated: bool  # cut by the patch border
    tier: ObjectTier = "group"
    mark: int | None = None  # set-of-marks number (instance tier)
    tag: str | None = None  # "tennis court-1" (instance tier)
    group_id: int | None = None
    drop_reason: str | None = None


@dataclass
class Mark:
    """A set-of-marks label: the square's centre lies inside the object; squares never overlap."""

    number: int
    object_id: int
    x: int  # centre, patch pixels
    y: int
    size: int  # square side


@dataclass
class Group:
    """Same-category group-tier objects in one grid cell; its mask is the union of the members."""

    group_id: int
    tag: str  # "small vehicles-1"
    category_id: int
    category: str  # display word, singular
    grid: str  # "1x1", "1x2", "2x1", "2x2", "3x3"
    cell: str  # cell word, e.g. "top left"; "whole image" for 1x1
    position: str  # 3x3 word of the union's centroid
    count: int
    quantity: str  # word from TierRule.quantity_words
    member_ids: list[int]
    rle: dict
    bbox: tuple[float, float, float, float]
    area: int


@dataclass
class PatchPlan:
    """The annotation plan of one kept patch."""

    patch_id: str  # P<id>_<y0>_<y1>_<x0>_<x1>, or the image name when kept whole
    split: str
    source_image: str
    source_image_id: int
    source_path: str  # relative to the dataset root
    window: Window
    width: int
    height: int
    image_path: str | None  # patch PNG, relative to the output split folder
    som_path: str | None  # set-of-marks PNG, relative to the output split folder
    georef: Georef | None
    objects: list[PlannedObject]
    groups: list[Group]
    marks: list[Mark]
    config_hash: str

    @property
    def instances(self) -> list[PlannedObject]:
        return [o for o in self.objects if o.tier == "instance"]
