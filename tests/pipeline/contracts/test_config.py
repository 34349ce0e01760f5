"""The run config refuses what would crash, hang or silently mislabel a build, naming the field."""

import math

import pytest
from pydantic import ValidationError

from pipeline.contracts.config import MarkConfig, PlanConfig, config_reference

BASE = {"source": {"root": "/data"}, "output": {"out": "/out"}}


def refused(**sections) -> list[tuple[str, str]]:
    """(dotted field, message) of every error of a PlanConfig with these sections over BASE."""
    data = {**BASE, **{k: ({**BASE.get(k, {}), **v} if isinstance(v, dict) else v) for k, v in sections.items()}}
    with pytest.raises(ValidationError) as err:
        PlanConfig.model_validate(data)
    return [(".".join(str(x) for x in e["loc"]), e["msg"]) for e in err.value.errors()]


@pytest.mark.parametrize("sections, field, says", [
    ({"marks": {"font_scale": 1e4}}, "marks.font_scale", "less than or equal to 10"),  # OpenCV SIGSEGVs here
    ({"marks": {"grid_thickness": 40_000}}, "marks.grid_thickness", "less than or equal"),
    ({"marks": {"grid_color": [0, 300, 0]}}, "marks.grid_color.1", "less than or equal to 255"),
    ({"clip": {"min_fragment_area": math.nan}}, "clip.min_fragment_area", "finite"),
    ({"filters": {"min_object_fraction": math.nan}}, "filters.min_object_fraction", "finite"),
    ({"priors": {"elongation": math.inf}}, "priors.elongation", "finite"),
    ({"priors": {"size_words": [[0.01, "small"], [0.001, "tiny"]]}}, "priors.size_words", "strictly ascending"),
    ({"priors": {"size_words": [[0.01, "small"], [0.01, "tiny"]]}}, "priors.size_words", "strictly ascending"),
    ({"priors": {"size_words": []}}, "priors.size_words", "empty"),
    ({"priors": {"size_words": [[0.5, " "]]}}, "priors.size_words", "blank"),
    ({"priors": {"size_words": [[2.0, "huge"]]}}, "priors.size_words.0.0", "less than or equal to 1"),
    ({"tiers": {"quantity_words": [[5, "a few"], [2, "two"]]}}, "tiers.quantity_words", "strictly ascending"),
    ({"source": {"split": "../x"}}, "source.split", "not a plain folder name"),
    ({"source": {"split": "val/../../x"}}, "source.split", "not a plain folder name"),
    ({"tiling": {"patch_size": 512, "overlap": 512}}, "tiling", "overlap (512) must be smaller than patch_size"),
    ({"tiling": {"patch_size": 20_000}}, "tiling.patch_size", "less than or equal to 8192"),
    ({"filters": {"min_objects": 5, "max_objects": 2}}, "filters", "below min_objects"),
    ({"workers": 10**6}, "workers", "less than or equal"),
])
def test_out_of_range_settings_are_refused_naming_the_field(sections, field, says):
    errors = refused(**sections)
    assert any(loc == field and says in msg for loc, msg in errors), errors


def test_the_limits_leave_room_for_real_settings():
    cfg = PlanConfig.model_validate({**BASE, "tiling": {"patch_size": 4096, "overlap": 4095},
                                     "marks": {"font_scale": 10, "grid_color": [0, 128, 255]},
                                     "priors": {"size_words": [[0.5, "small"], [1.0, "large"]]}})
    assert cfg.tiling.stride == 1 and cfg.marks.font_scale == 10


def test_the_largest_font_scale_and_grid_draw_without_crashing():
    """The bounds are where OpenCV still works: marks at the largest allowed scale, the widest grid, are drawn
    (raising a bound to where OpenCV segfaults fails here)."""
    import annotated_types
    import numpy as np

    from annotations.marks import render_som
    from pipeline.contracts.records import Mark

    def upper(name):
        return next(m.le for m in MarkConfig.model_fields[name].metadata if isinstance(m, annotated_types.Le))

    cfg = MarkConfig(font_scale=upper("font_scale"), grid_thickness=upper("grid_thickness"))
    img = render_som(np.zeros((800, 800, 3), np.uint8), [Mark(100, 1, 400, 400, 24)], cfg)
    assert img.shape == (800, 800, 3) and img.any()


def test_every_bounded_field_shows_its_range_in_the_reference():
    rows = {line.split("|")[1].strip(" `"): line.split("|")[3].strip() for line in config_reference().splitlines()[2:]}
    assert rows["marks.font_scale"] == "(0, 10]" and rows["tiling.patch_size"] == "[32, 8192]"
    assert rows["tiling.overlap"] == "[0, patch_size)" and "strictly ascending" in rows["priors.size_words"]
    assert "plain name" in rows["source.split"]
