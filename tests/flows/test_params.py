"""The build's one parameter model: defaults build the demo; bad values are refused with the field named."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from flows.params import BuildParams


def test_defaults_build_the_demo_with_the_template_drafter():
    p = BuildParams()
    assert p.source.root == Path("demo/data") and p.source.synthetic == "small" and p.lmm is None
    cfg = p.plan_config("val")
    assert cfg.source.split == "val" and cfg.output.out == Path("demo/build") and cfg.tiling.patch_size == 800


def test_split_placeholder_in_paths_and_sections_reach_the_plan_config():
    p = BuildParams.model_validate({"source": {"root": "/d", "format": "coco", "annotations": "ann/{split}.json",
                                               "category_map": {"1": "plane"}},
                                    "tiling": {"patch_size": 512, "overlap": 100}, "tiers": {"max_marks": 5}})
    cfg = p.plan_config("train")
    assert cfg.source.annotations == Path("ann/train.json") and cfg.tiling.patch_size == 512
    assert cfg.tiers.max_marks == 5 and cfg.source.format == "coco"


@pytest.mark.parametrize("data, field", [
    ({"splits": []}, "splits"),
    ({"splits": ["val", "val"]}, "splits"),
    ({"splits": ["../x"]}, "splits"),
    ({"tiling": {"patch_size": 8}}, "tiling.patch_size"),
    ({"batch_shards": 0}, "batch_shards"),
    ({"source": {"format": "shapefile"}}, "source.format"),
    ({"lmm": {"endpoints": {"urls": ["localhost:8000"], "model": "m"}}}, "lmm.endpoints.urls"),
    ({"lmm": {"endpoints": {"urls": ["http://h:1"], "model": "m"}, "tiers": {"caption": {"urls": ["http://h:1"], "model": "m"}}}},
     "lmm.tiers.caption"),
    ({"task_runner": {"kind": "ray"}}, "task_runner.kind"),
    ({"no_such_setting": 1}, "no_such_setting"),
])
def test_invalid_parameters_name_the_field(data, field):
    with pytest.raises(ValidationError) as err:
        BuildParams.model_validate(data)
    locs = [".".join(str(x) for x in e["loc"]) for e in err.value.errors()]
    assert any(loc.startswith(field) for loc in locs), locs


def test_lmm_parameters_become_drafting_settings_with_per_tier_pools():
    p = BuildParams.model_validate({"lmm": {
        "endpoints": {"urls": ["http://a:1", "http://b:1"], "model": "ixc"},
        "merge": {"urls": ["http://m:1"], "model": "llama"},
        "tiers": {"group": {"urls": ["http://g:1"], "model": "ixc-g"}},
        "instance_mode": "per-patch", "max_in_flight": 3}})
    s = p.lmm.settings()
    assert [e.url for e in s.pool("holistic")] == ["http://a:1", "http://b:1"]
    assert [(e.url, e.model) for e in s.pool("merge")] == [("http://m:1", "llama")]
    assert [(e.url, e.model) for e in s.pool("group")] == [("http://g:1", "ixc-g")]
    assert s.instance_mode == "per-patch" and s.max_in_flight == 3
