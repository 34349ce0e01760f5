"""One validated config object per run.

Every rule the paper left unpublished (patch filters, the instance/group split, the words of the spatial
priors) is a field here with a documented default, so a build is reproducible from its config alone.
The config hash recorded in every plan covers the fields that change the output, not paths or workers.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SourceFormat = Literal["isaid", "isaid-masks", "isaid-patches", "coco"]
GridName = Literal["auto", "1x1", "1x2", "2x1", "2x2", "3x3"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CategorySpec(_Model):
    """A category of a custom vocabulary (generic COCO datasets)."""

    id: int
    name: str
    display: str | None = None
    plural: str | None = None
    color: tuple[int, int, int] = (255, 255, 255)
    tier: Literal["instance", "group"] = "instance"


class SourceConfig(_Model):
    """Where the input is and how it is laid out."""

    root: Path = Field(description="Dataset root folder; every file it names must stay inside it.")
    split: str = Field("val", description="Split folder under the root (iSAID: train or val).")
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
        "categories are reported as unknown.",
    )
    skip_images: list[str] = Field(
        default_factory=lambda: ["P1527", "P1530"], description="Image names never planned (the devkit skips these)."
    )


class TilingConfig(_Model):
    """The iSAID devkit's windows: starts 0, stride, 2*stride, ... clamped inside the image."""

    patch_size: int = Field(800, ge=32, description="Patch side in pixels.")
    overlap: int = Field(200, ge=0, description="Overlap between neighbouring windows in pixels.")

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
        16.0, ge=0, description="Pieces of a clipped object smaller than this (px^2) are dropped as slivers."
    )
    min_object_area: float = Field(
        16.0, ge=0, description="An object whose clipped area is below this (px^2) is not in the patch."
    )
    bounds_tolerance: float = Field(
        2.0, ge=0, description="Coordinates may lie this many px outside the image before they are rejected."
    )


class FilterConfig(_Model):
    """Which patches are kept. Empty patches are always dropped."""

    min_objects: int = Field(1, ge=1, description="Keep a patch only with at least this many objects.")
    max_objects: int | None = Field(None, ge=1, description="Drop patches with more objects than this (None: no cap).")
    min_object_fraction: float = Field(
        0.0, ge=0, le=1, description="Drop patches whose objects cover less than this fraction of the patch."
    )
    require_instance: bool = Field(False, description="Keep only patches with at least one key (marked) instance.")
    drop_all_truncated: bool = Field(
        False, description="Drop patches in which every object is cut by the patch border."
    )


class TierRule(_Model):
    """The explicit instance/group split (the paper never published its rule).

    An object is a key instance when its category's tier is "instance", its clipped area is at least
    `min_instance_area`, its patch holds at most `max_instances_per_category` such objects of that category
    (denser categories become groups), and fewer than `max_marks` marks are placed already (largest first).
    Everything else becomes a group member, bucketed by the cells of `group_grid`.
    """

    instance_categories: list[str] | None = Field(
        None, description="Category names of the instance tier (default: each category's own tier)."
    )
    group_categories: list[str] | None = Field(
        None, description="Category names of the group tier (default: each category's own tier)."
    )
    min_instance_area: float = Field(900.0, ge=0, description="Smaller instance-tier objects join a group (px^2).")
    max_instances_per_category: int = Field(
        8, ge=1, description="More same-category instance-tier objects than this in a patch are grouped (density)."
    )
    max_marks: int = Field(20, ge=0, description="At most this many marked instances per patch (largest first).")
    group_grid: GridName = Field(
        "auto",
        description="Grid whose cells bucket group members: 1x1, 1x2 (left/right), 2x1 (top/bottom), 2x2, 3x3, "
        "or auto (1x1 up to 3 members, 1x2/2x1 along the wider spread up to 12, 2x2 up to 40, else 3x3).",
    )
    min_group_size: int = Field(1, ge=1, description="Cells with fewer members than this are dropped.")
    quantity_words: list[tuple[int, str]] = Field(
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
        description="(upper bound, word) pairs, ascending: the first bound >= count names the quantity.",
    )

    @field_validator("quantity_words")
    @classmethod
    def _ascending(cls, v: list[tuple[int, str]]) -> list[tuple[int, str]]:
        bounds = [b for b, _ in v]
        if not v or bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
            raise ValueError("quantity_words must be non-empty with strictly ascending bounds")
        return v


class PriorConfig(_Model):
    """Words of the spatial priors."""

    size_words: list[tuple[float, str]] = Field(
        default_factory=lambda: [(0.001, "tiny"), (0.01, "small"), (0.05, "medium"), (0.2, "large"), (1.0, "very large")],
        description="(upper bound of area / patch area, word) pairs, ascending.",
    )
    elongation: float = Field(
        2.0, ge=1, description="Objects whose rotated box is this many times longer than wide get an orientation."
    )


class MarkConfig(_Model):
    """Set-of-marks drawing: black filled squares with yellow numbers, and the 3x3 grid."""

    box: int = Field(24, ge=8, description="Side of a mark's square in px (widened for numbers of two or more digits).")
    font_scale: float = Field(0.6, gt=0, description="OpenCV Hershey font scale of the numbers.")
    draw_grid: bool = Field(True, description="Draw the 3x3 grid lines.")
    grid_color: tuple[int, int, int] = Field((255, 255, 255), description="RGB of the grid lines.")
    grid_thickness: int = Field(2, ge=1, description="Grid line width in px.")


class OutputConfig(_Model):
    out: Path = Field(description="Output root; plans go to <out>/<split>/plans/.")
    shard_images: int = Field(8, ge=1, description="Source images per Parquet shard (the unit of resume).")
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
    workers: int = Field(0, ge=0, description="Worker processes (0: one per core).")

    def fingerprint(self) -> str:
        """Hash of what shapes the output (not paths, worker count or strictness)."""
        keep = self.model_dump(mode="json", exclude={"output": {"out"}, "source": {"root"}, "strict": True, "workers": True})
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def load_config_file(path: Path) -> dict:
    """Read a YAML or JSON config file into a plain dict (validated by the caller)."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read config: {exc}") from exc
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


def config_reference() -> str:
    """Markdown table of every config field, its default and description (docs/config.md is built from it)."""
    lines = []
    sections = [("source", SourceConfig), ("output", OutputConfig), ("tiling", TilingConfig), ("clip", ClipConfig),
                ("filters", FilterConfig), ("tiers", TierRule), ("priors", PriorConfig), ("marks", MarkConfig)]
    lines.append("| field | default | meaning |\n|---|---|---|")
    for key in ("strict", "workers"):
        f = PlanConfig.model_fields[key]
        lines.append(f"| `{key}` | `{json.dumps(f.get_default(call_default_factory=True))}` | {f.description} |")
    for name, model in sections:
        for field_name, f in model.model_fields.items():
            default = "required" if f.is_required() else f"`{json.dumps(f.get_default(call_default_factory=True), default=str)}`"
            lines.append(f"| `{name}.{field_name}` | {default} | {(f.description or '').replace('|', '/')} |")
    return "\n".join(lines) + "\n"
