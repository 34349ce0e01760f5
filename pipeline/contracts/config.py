"""One validated config object per run.

Every rule the paper left unpublished (patch filters, the instance/group split, the words of the spatial
priors) is a field here with a documented default, so a build is reproducible from its config alone.
The config hash recorded in every plan covers the fields that change the output, not paths or workers.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Literal

import annotated_types
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.contracts.layout import check_split

SourceFormat = Literal["isaid", "isaid-masks", "isaid-patches", "coco"]
GridName = Literal["auto", "1x1", "1x2", "2x1", "2x2", "3x3"]
Channel = Annotated[int, Field(ge=0, le=255)]
RGB = tuple[Channel, Channel, Channel]
MAX_WORKERS = 1024
MAX_AREA = 8192 * 8192  # px^2 of the largest patch


class _Model(BaseModel):
    # no NaN or infinity anywhere: a NaN threshold compares false with everything and silently keeps or drops all
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def ascending_words(pairs: list[tuple[float, str]], what: str) -> list[tuple[float, str]]:
    """(upper bound, word) pairs must be non-empty, with strictly ascending bounds and non-blank words: the first
    bound >= a value names it, so an out-of-order list would silently name values with the wrong word."""
    bounds = [b for b, _ in pairs]
    if not pairs:
        raise ValueError(f"{what} must not be empty")
    if any(a >= b for a, b in zip(bounds, bounds[1:])):
        raise ValueError(f"{what} bounds must be strictly ascending, got {bounds}")
    blank = [b for b, w in pairs if not w.strip()]
    if blank:
        raise ValueError(f"{what} words must not be blank (bounds {blank})")
    return pairs


class CategorySpec(_Model):
    """A category of a custom vocabulary (generic COCO datasets)."""

    id: int = Field(ge=0)
    name: str = Field(min_length=1)
    display: str | None = None
    plural: str | None = None
    color: RGB = (255, 255, 255)
    tier: Literal["instance", "group"] = "instance"


class SourceConfig(_Model):
    """Where the input is and how it is laid out."""

    root: Path = Field(description="Dataset root folder; every file it names must stay inside it.")
    split: str = Field("test", description="The split's name under the output root and in the release (GeoPixelD: "
                       "train or test); its source folder is `split_folders`' entry for it, else the same name.",
                       json_schema_extra={"range": "a plain name: letters, digits, `_` `.` `-`"})
    split_folders: dict[str, str] = Field(
        default_factory=lambda: {"test": "val"},
        description="Released split -> split folder under the root, where they differ. GeoPixelD releases iSAID-val as "
        "`test` (iSAID-test has no public masks), hence the default; `{}` reads every split from its own name.",
        json_schema_extra={"range": "plain names: letters, digits, `_` `.` `-`"})
    format: SourceFormat = Field(
        "isaid",
        description="isaid: COCO JSON + images (or, without the JSON, the two mask PNGs beside each image); "
        "isaid-masks: the two mask PNGs beside each image; "
        "isaid-patches: patches already cut by the iSAID devkit; coco: any COCO-style dataset.",
    )
    annotations: Path | None = Field(
        None, description="Annotation JSON, relative to the root (default: <split>/Annotations/iSAID_<split>.json)."
    )
    images: Path | None = Field(None, description="Image folder, relative to the root (default: <split>/images).")
    categories: list[CategorySpec] | None = Field(
        None, description="Custom vocabulary (default: iSAID's 15 classes)."
    )
    category_map: dict[str, str] | None = Field(
        None,
        description="Source category id or name -> vocabulary name (coco format). Unmapped source "
        "categories are reported as unknown. Without a map, a file's category ids are taken as the vocabulary's "
        "only where its category names agree; a file of another vocabulary is refused.",
    )
    skip_images: list[str] = Field(
        default_factory=lambda: ["P1527", "P1530"], description="Image names never planned (the devkit skips these)."
    )

    @field_validator("split")
    @classmethod
    def _plain_split(cls, v: str) -> str:
        return check_split(v)  # it names a folder under the output root

    @field_validator("split_folders")
    @classmethod
    def _plain_folders(cls, v: dict[str, str]) -> dict[str, str]:
        for name, folder in v.items():
            check_split(name), check_split(folder)  # folders under the root and under the output root
        return v

    @property
    def folder(self) -> str:
        """The split's folder under the source root (iSAID's `val` for GeoPixelD's `test`)."""
        return self.split_folders.get(self.split, self.split)


class TilingConfig(_Model):
    """The iSAID devkit's windows: starts 0, stride, 2*stride, ... clamped inside the image."""

    patch_size: int = Field(800, ge=32, le=8192, description="Patch side in pixels.")
    overlap: int = Field(200, ge=0, description="Overlap between neighbouring windows in pixels.",
                         json_schema_extra={"range": "[0, patch_size)"})

    @model_validator(mode="after")
    def _overlap_below_size(self) -> "TilingConfig":
        if self.overlap >= self.patch_size:
            raise ValueError(f"overlap ({self.overlap}) must be smaller than patch_size ({self.patch_size})")
        return self

    @property
    def stride(self) -> int:
        return self.patch_size - self.overlap


class ClipConfig(_Model):
    """How source polygons are checked and clipped to a patch."""

    min_fragment_area: float = Field(
        16.0, ge=0, le=MAX_AREA, description="Pieces of a clipped object smaller than this (px^2) are dropped as slivers."
    )
    min_object_area: float = Field(
        16.0, ge=0, le=MAX_AREA, description="An object whose clipped area is below this (px^2) is not in the patch."
    )
    bounds_tolerance: float = Field(
        2.0, ge=0, le=1000, description="Coordinates may lie this many px outside the image before they are rejected."
    )


class FilterConfig(_Model):
    """Which patches are kept. Empty patches are always dropped."""

    min_objects: int = Field(1, ge=1, le=100_000, description="Keep a patch only with at least this many objects.")
    max_objects: int | None = Field(None, ge=1, le=100_000,
                                    description="Drop patches with more objects than this (None: no cap).",
                                    json_schema_extra={"range": "[min_objects, 100000] or null"})
    min_object_fraction: float = Field(
        0.0, ge=0, le=1, description="Drop patches whose objects cover less than this fraction of the patch."
    )
    require_instance: bool = Field(False, description="Keep only patches with at least one key (marked) instance.")
    drop_all_truncated: bool = Field(
        False, description="Drop patches in which every object is cut by the patch border."
    )

    @model_validator(mode="after")
    def _cap_above_floor(self) -> "FilterConfig":
        if self.max_objects is not None and self.max_objects < self.min_objects:
            raise ValueError(f"max_objects ({self.max_objects}) is below min_objects ({self.min_objects}): "
                             "every patch would be dropped")
        return self


TierPreset = Literal["density", "cells"]

# What each preset gives the TierRule fields a config leaves out (explicit fields always win). "density" is the
# field defaults; "cells" is the rule before it (commit da96b17): every occupied cell of a count-chosen grid a group.
TIER_PRESETS: dict[str, dict] = {
    "density": {},
    "cells": {"max_instances_per_category": 8, "cell_members": None, "min_group_size": 1, "lone_objects": "drop"},
}


class TierRule(_Model):
    """The explicit instance/group split (the paper never published its rule); `preset` picks one of two.

    Both presets: an object is a key instance when its category's tier is "instance", its clipped area is at
    least `min_instance_area`, its patch holds at most `max_instances_per_category` such objects of that
    category (denser categories become groups), and fewer than `max_marks` marks are placed already (largest
    first). Everything else is a group member, bucketed per category by the cells of `group_grid`.

    `density` (default; GeoPixelD's few large groups, about 33 objects a group phrase): a category's members are
    one group for the whole patch unless they are many and spread: they are split (1x2 or 2x1, or 2x2: never
    more than four groups) only where every occupied cell holds at least `cell_members` of them. A
    category with fewer than `min_group_size` group members forms no group: with `lone_objects: instance` those
    of at least `min_instance_area` become key instances, the rest are dropped (`tier: dropped`, with a
    `drop_reason` in the plan). `cells` (the earlier rule, kept for comparison): the grid by count alone
    (1x1 up to 3 members, 1x2/2x1 along the wider spread up to 12, 2x2 up to 40, else 3x3), every occupied
    cell a group, groups of one allowed. A preset only supplies the values a config leaves out; both the
    preset and the values are in the config fingerprint, so plans of different rules never mix.
    """

    preset: TierPreset = Field(
        "density", description="Which rule supplies the tier fields left out: density (few large groups, split "
        "only when many and spread; lone small objects dropped) or cells (the earlier rule: a group per occupied "
        "cell of a count-chosen grid, groups of one allowed; sets max_instances_per_category 8, cell_members null, "
        "min_group_size 1, lone_objects drop).")
    instance_categories: list[str] | None = Field(
        None, description="Category names of the instance tier (default: each category's own tier)."
    )
    group_categories: list[str] | None = Field(
        None, description="Category names of the group tier (default: each category's own tier)."
    )
    min_instance_area: float = Field(900.0, ge=0, le=MAX_AREA, description="Smaller instance-tier objects join a group (px^2).")
    max_instances_per_category: int = Field(
        12, ge=1, le=1000, description="More same-category instance-tier objects than this in a patch are grouped "
        "(density; cells preset: 8)."
    )
    max_marks: int = Field(20, ge=0, le=100, description="At most this many marked instances per patch (largest first).")
    group_grid: GridName = Field(
        "auto",
        description="Grid whose cells bucket group members: 1x1, 1x2 (left/right), 2x1 (top/bottom), 2x2, 3x3, "
        "or auto: by `cell_members` (density), or by count when it is null (cells: 1x1 up to 3 members, 1x2/2x1 "
        "along the wider spread up to 12, 2x2 up to 40, else 3x3).",
    )
    cell_members: int | None = Field(
        33, ge=1, le=100_000,
        description="auto grid: a category's members are split into cells (1x2 or 2x1, or 2x2: the most cells that "
        "qualify) only when every occupied cell holds at least this many, else they are one group; 33 is GeoPixelD's "
        "mean group phrase. null: the grid by count (cells preset).",
        json_schema_extra={"range": "[1, 100000] or null"})
    min_group_size: int = Field(
        6, ge=1, le=100_000,
        description="A group needs this many members (6: at least `several` of quantity_words): a category with "
        "fewer group members in the patch forms no group (see lone_objects), and a grid cell with fewer is dropped "
        "(cells preset: 1, every object grouped).")
    lone_objects: Literal["instance", "drop"] = Field(
        "instance",
        description="Group-tier objects of a category too few to group (under min_group_size): instance: those of "
        "at least min_instance_area become key instances (marks allowing), the rest are dropped; drop: all are "
        "dropped. Dropped objects stay in the plan with `tier: dropped` and a `drop_reason` (cells preset: drop).")
    quantity_words: list[tuple[Annotated[int, Field(ge=1)], str]] = Field(
        default_factory=lambda: [
            (1, "a single"),
            (2, "two"),
            (3, "three"),
            (5, "a few"),
            (10, "several"),
            (30, "many"),
            (100, "numerous"),
            (10**9, "more than a hundred"),
        ],
        description="(upper bound, word) pairs: the first bound >= count names the quantity (the last word above "
        "them all).",
        json_schema_extra={"range": "non-empty; bounds >= 1, strictly ascending; words non-blank"},
    )

    @model_validator(mode="before")
    @classmethod
    def _preset_values(cls, data):
        """The preset's values under the fields a config gives (an unknown preset is refused by its Literal)."""
        if isinstance(data, dict) and data.get("preset", "density") in TIER_PRESETS:
            return {**TIER_PRESETS[data.get("preset", "density")], **data}
        return data

    @field_validator("quantity_words")
    @classmethod
    def _ascending(cls, v: list[tuple[int, str]]) -> list[tuple[int, str]]:
        return ascending_words(v, "quantity_words")


class PriorConfig(_Model):
    """Words of the spatial priors."""

    size_words: list[tuple[Annotated[float, Field(gt=0, le=1)], str]] = Field(
        default_factory=lambda: [(0.001, "tiny"), (0.01, "small"), (0.05, "medium"), (0.2, "large"), (1.0, "very large")],
        description="(upper bound of area / patch area, word) pairs: the first bound >= an object's fraction names "
        "its size.",
        json_schema_extra={"range": "non-empty; bounds in (0, 1], strictly ascending; words non-blank"},
    )
    elongation: float = Field(
        2.0, ge=1, le=1000, description="Objects whose rotated box is this many times longer than wide get an orientation."
    )

    @field_validator("size_words")
    @classmethod
    def _ascending(cls, v: list[tuple[float, str]]) -> list[tuple[float, str]]:
        return ascending_words(v, "size_words")


class MarkConfig(_Model):
    """Set-of-marks drawing: black filled squares with yellow numbers, and the 3x3 grid."""

    box: int = Field(24, ge=8, le=256, description="Side of a mark's square in px (widened for numbers of two or more digits).")
    # OpenCV's putText crashes the process (SIGSEGV) from a scale of about 10,000 and getTextSize overflows from
    # about 5,000; 10 already draws three digits 560 px wide
    font_scale: float = Field(0.6, gt=0, le=10, description="OpenCV Hershey font scale of the numbers.")
    draw_grid: bool = Field(True, description="Draw the 3x3 grid lines.")
    grid_color: RGB = Field((255, 255, 255), description="RGB of the grid lines.", json_schema_extra={"range": "0-255 each"})
    grid_thickness: int = Field(2, ge=1, le=64, description="Grid line width in px.")  # OpenCV refuses > 32767


class OutputConfig(_Model):
    out: Path = Field(description="Output root; plans go to <out>/<split>/plans/.")
    shard_images: int = Field(8, ge=1, le=10_000, description="Source images per Parquet shard (the unit of resume).")
    write_patches: bool = Field(True, description="Write each kept patch as PNG under <out>/<split>/patches/.")
    write_som: bool = Field(True, description="Write set-of-marks PNGs for patches with marks (<out>/<split>/som/).")
    png_compression: int = Field(1, ge=0, le=9, description="PNG compression level (0 fastest, 9 smallest).")


class PlanRules(_Model):
    """The planning rules (shared by a planning run and a whole build)."""

    tiling: TilingConfig = TilingConfig()
    clip: ClipConfig = ClipConfig()
    filters: FilterConfig = FilterConfig()
    tiers: TierRule = TierRule()
    priors: PriorConfig = PriorConfig()
    marks: MarkConfig = MarkConfig()


class PlanConfig(PlanRules):
    """Everything one planning run needs."""

    source: SourceConfig
    output: OutputConfig
    strict: bool = Field(False, description="Stop at the first bad record instead of quarantining it.")
    workers: int = Field(0, ge=0, le=MAX_WORKERS, description="Worker processes (0: one per core).")

    def fingerprint(self) -> str:
        """Hash of what shapes the output (not paths, worker count or strictness)."""
        keep = self.model_dump(mode="json", exclude={"output": {"out"}, "source": {"root"}, "strict": True, "workers": True})
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def load_config_file(path: Path) -> dict:
    """Read a YAML or JSON config file into a plain dict (validated by the caller)."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ValueError(f"{path}: cannot read config: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:  # one line: where and what, not YAML's multi-line excerpt
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ValueError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file must hold a mapping, not {type(data).__name__}")
    return data


def load_plan_config(path: Path | None, overrides: dict) -> PlanConfig:
    """A config file first (when given), dotted overrides over it (None values left out); validated once,
    before any work starts."""
    from pipeline.contracts.overrides import apply_overrides

    data = load_config_file(Path(path)) if path else {}
    return PlanConfig.model_validate(apply_overrides(data, overrides, skip_none=True))


def field_range(f) -> str:
    """A field's allowed values for the docs: its numeric bounds (from the pydantic constraints), else its
    `range` note."""
    if isinstance(f.json_schema_extra, dict) and "range" in f.json_schema_extra:
        return str(f.json_schema_extra["range"])
    lo, hi = "[", ")"  # interval notation: [32, 8192] includes both ends, (0, 10] not 0
    low = high = None
    for m in f.metadata:
        if isinstance(m, annotated_types.Ge):
            low = m.ge
        elif isinstance(m, annotated_types.Gt):
            lo, low = "(", m.gt
        elif isinstance(m, annotated_types.Le):
            hi, high = "]", m.le
        elif isinstance(m, annotated_types.Lt):
            high = m.lt
    if low is None and high is None:
        return ""
    return f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"


def config_reference() -> str:
    """Markdown table of every config field, its default, range and description (docs/config.md is built from it)."""
    lines = []
    sections = [("source", SourceConfig), ("output", OutputConfig), ("tiling", TilingConfig), ("clip", ClipConfig),
                ("filters", FilterConfig), ("tiers", TierRule), ("priors", PriorConfig), ("marks", MarkConfig)]
    lines.append("| field | default | range | meaning |\n|---|---|---|---|")
    for key in ("strict", "workers"):
        f = PlanConfig.model_fields[key]
        lines.append(f"| `{key}` | `{json.dumps(f.get_default(call_default_factory=True))}` | {field_range(f)} | "
                     f"{f.description} |")
    for name, model in sections:
        for field_name, f in model.model_fields.items():
            default = "required" if f.is_required() else f"`{json.dumps(f.get_default(call_default_factory=True), default=str)}`"
            lines.append(f"| `{name}.{field_name}` | {default} | {field_range(f)} | {(f.description or '').replace('|', '/')} |")
    return "\n".join(lines) + "\n"
