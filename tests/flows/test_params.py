"""The build's one parameter model: defaults build the demo; bad values are refused with the field named."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from flows.in_process import summary_table
from flows.params import DEMO, BuildParams
from pipeline.synthetic.isaid import ensure_source, is_synthetic_root


def test_defaults_read_real_data_and_only_the_demo_asks_for_synthetic_data():
    p = BuildParams()
    assert p.source.root == Path("demo/data") and p.source.synthetic is None and p.lmm is None
    cfg = p.plan_config("val")
    assert cfg.source.split == "val" and cfg.output.out == Path("demo/build") and cfg.tiling.patch_size == 800
    assert BuildParams.model_validate(DEMO).source.synthetic == "small"
    from flows.serve import load_params

    assert load_params(None).source.synthetic == "small"  # the served demo deployment stays the demo


def test_a_missing_root_fails_naming_it_instead_of_building_demo_data(tmp_path):
    root = tmp_path / "iSAD"  # misspelt
    with pytest.raises(FileNotFoundError, match="source.root .*iSAD"):
        ensure_source(root, ["val"], None)
    assert not root.exists()


def test_synthetic_data_is_generated_only_into_a_new_folder_and_the_build_says_so(tmp_path):
    other = tmp_path / "real"
    (other / "notes").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="not a synthetic set"):
        ensure_source(other, ["val"], "tiny")
    assert sorted(p.name for p in other.iterdir()) == ["notes"]  # nothing written into someone's folder

    root = tmp_path / "demo"
    assert ensure_source(root, ["val"], "tiny", log=lambda m: None) is True
    assert (root / "val/images").is_dir() and is_synthetic_root(root)
    # the same folder read with synthetic: null is still known to be synthetic, and the release is told
    p = BuildParams.model_validate({"source": {"root": str(root)}})
    assert ensure_source(root, ["val"], None) is True and p.synthetic() and p.release_settings().synthetic
    real = BuildParams.model_validate({"source": {"root": str(other)}})
    assert not real.synthetic() and not real.release_settings().synthetic


def test_summary_table_says_when_the_data_is_synthetic():
    result = {"stages": [{"split": "val", "stage": "plan", "seconds": 1.0}], "task_runs": 3, "dataset": "d"}
    assert "SYNTHETIC" not in summary_table(result)
    assert "SYNTHETIC DATA" in summary_table({**result, "synthetic": True})


def test_split_placeholder_in_paths_and_sections_reach_the_plan_config():
    p = BuildParams.model_validate({"source": {"root": "/d", "format": "coco", "annotations": "ann/{split}.json",
                                               "category_map": {"1": "plane"}},
                                    "tiling": {"patch_size": 512, "overlap": 100}, "tiers": {"max_marks": 5}})
    cfg = p.plan_config("train")
    assert cfg.source.annotations == Path("ann/train.json") and cfg.tiling.patch_size == 512
    assert cfg.tiers.max_marks == 5 and cfg.source.format == "coco"


def test_the_released_splits_are_geopixelds_and_test_reads_isaids_val():
    p = BuildParams()
    assert p.splits == ["train", "test"] and p.dataset.require_curation == ["test"]  # the gate applies by default
    test, train = p.plan_config("test"), p.plan_config("train")
    assert (test.source.split, test.source.folder, train.source.folder) == ("test", "val", "train")
    mine = BuildParams.model_validate({"source": {"split_folders": {}, "images": "{split}/img"}, "splits": ["test"]})
    assert mine.plan_config("test").source.folder == "test" and mine.plan_config("test").source.images == Path("test/img")
    assert p.model_copy(update={"source": p.source.model_copy(update={"images": Path("{split}/img")})}) \
        .plan_config("test").source.images == Path("val/img")  # `{split}` is the source folder


@pytest.mark.parametrize("data, field", [
    ({"source": {"split_folders": {"test": "../val"}}}, "source.split_folders"),
    ({"splits": []}, "splits"),
    ({"splits": ["val", "val"]}, "splits"),
    ({"splits": ["../x"]}, "splits"),
    ({"splits": ["a b"]}, "splits"),
    ({"tiling": {"patch_size": 8}}, "tiling.patch_size"),
    ({"tiling": {"patch_size": 100_000}}, "tiling.patch_size"),
    ({"tiling": {"patch_size": 512, "overlap": 512}}, "tiling"),
    ({"marks": {"font_scale": 10_000}}, "marks.font_scale"),
    ({"clip": {"min_object_area": float("nan")}}, "clip.min_object_area"),
    ({"priors": {"size_words": [[0.1, "small"], [float("inf"), "huge"]]}}, "priors.size_words"),
    ({"priors": {"size_words": [[0.2, "large"], [0.01, "small"]]}}, "priors.size_words"),
    ({"batch_shards": 0}, "batch_shards"),
    ({"batch_shards": 10**9}, "batch_shards"),
    ({"workers": 10**6}, "workers"),
    ({"lmm": {"endpoints": {"urls": ["http://h:1"], "model": "m"}, "timeout": float("inf")}}, "lmm.timeout"),
    ({"lmm": {"endpoints": {"urls": ["http://h:1"], "model": "m"}, "max_in_flight": 10**6}}, "lmm.max_in_flight"),
    ({"lmm": {"endpoints": {"urls": ["http://h:1"], "model": "m"}, "seed": -1}}, "lmm.seed"),
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


@pytest.mark.parametrize("kw", [{"timeout": float("nan")}, {"timeout": 0}, {"temperature": float("inf")},
                                {"max_in_flight": 0}, {"invalid_retries": -1}])
def test_drafting_settings_refuse_out_of_range_values_naming_them(kw):
    from pipeline.drafting.lmm_client import Endpoint
    from pipeline.drafting.lmm_drafter import LMMSettings

    with pytest.raises(ValueError, match=next(iter(kw))):
        LMMSettings([Endpoint("http://h:1", "m")], **kw)
