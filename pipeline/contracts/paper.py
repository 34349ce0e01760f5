"""GeoPixelD as released (GeoPixel, ICML 2025; ../shared/GEOPIXELD.md): the figures a build is compared with.

Absolute counts of a small build say little beside the paper's; the per-patch ratios say whether the tier rule
gives GeoPixelD's mix of instance and group phrases, so `geopixeld plan`, the flow's plan artifact and the
dataset card all report `per_patch` beside `PAPER_PER_PATCH`.
"""

from __future__ import annotations

from collections.abc import Mapping

# None: not reported
PAPER = {
    "train": {"holistic": 16795, "instance": 36793, "group": 17023, "phrases": 53816, "objects": 600817, "caption_chars": 740},
    "test": {"holistic": None, "instance": None, "group": None, "phrases": 5427, "objects": 61384, "caption_chars": 647},
}

PER_PATCH_ROWS = (("instance", "instance phrases per patch"), ("group", "group phrases per patch"),
                  ("objects", "objects per patch"), ("objects_per_group", "objects per group phrase"))


def _ratios(patches: float, instance: float, group: float, objects: float, group_objects: float) -> dict[str, float | None]:
    return {"instance": instance / patches if patches else None, "group": group / patches if patches else None,
            "objects": objects / patches if patches else None,
            "objects_per_group": group_objects / group if group else None}


# GeoPixelD train: 16,795 patches, 36,793 instance and 17,023 group phrases, 600,817 objects; the objects of
# group phrases are those instance phrases do not cover
_T = PAPER["train"]
PAPER_PER_PATCH = _ratios(_T["holistic"], _T["instance"], _T["group"], _T["objects"], _T["objects"] - _T["instance"])


def per_patch(stats: Mapping[str, int]) -> dict[str, float | None]:
    """Per-patch ratios of planning statistics (`kept`, `instances`, `groups`, `objects`, `group_objects`)."""
    return _ratios(stats.get("kept", 0), stats.get("instances", 0), stats.get("groups", 0), stats.get("objects", 0),
                   stats.get("group_objects", 0))


def per_patch_table(stats: Mapping[str, int], indent: str = "") -> str:
    """Markdown rows: each per-patch ratio of this build beside the paper's (GeoPixelD train)."""
    ours = per_patch(stats)
    fmt = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
    lines = [f"{indent}| per patch | this build | GeoPixelD train |", f"{indent}|---|---:|---:|"]
    lines += [f"{indent}| {label} | {fmt(ours[k])} | {fmt(PAPER_PER_PATCH[k])} |" for k, label in PER_PATCH_ROWS]
    return "\n".join(lines)
