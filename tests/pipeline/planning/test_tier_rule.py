"""The tier rule through the planning stage on the tiny synthetic set: what each preset plans and what the planner's
statistics say it cost."""

from __future__ import annotations

import pyarrow.dataset as ds
import pytest

from pipeline.contracts.paper import per_patch
from pipeline.contracts.plan_schema import row_to_plan
from pipeline.contracts.shards import ManifestMismatch
from pipeline.planning.stage import run_plan
from pipeline.synthetic.tiny_build import plan_config


def _plans(out, split="val"):
    return [row_to_plan(r) for r in ds.dataset(out / split / "plans", format="parquet").to_table().to_pylist()]


@pytest.fixture(scope="module")
def planned(tiny_root, tmp_path_factory):
    """The val split planned with each preset: {preset: (summary, plans)}."""
    out = {}
    for preset in ("density", "cells"):
        where = tmp_path_factory.mktemp(preset)
        s = run_plan(plan_config(tiny_root, where, tiers={"preset": preset},
                                 output={"write_patches": False, "write_som": False}), progress=False)
        out[preset] = (s, _plans(where))
    return out


def test_the_default_rule_makes_no_group_under_its_minimum_and_records_every_drop(planned):
    summary, plans = planned["density"]
    groups = [g for p in plans for g in p.groups]
    assert groups and all(g.count >= 6 for g in groups)
    dropped = [o for p in plans for o in p.objects if o.tier == "dropped"]
    assert dropped and all(o.drop_reason and o.group_id is None and o.tag is None for o in dropped)
    assert summary.stats["dropped_objects"] == len(dropped)
    assert summary.stats["group_objects"] == sum(g.count for g in groups)
    unphrased = sum(not p.instances and not p.groups for p in plans)
    assert summary.stats.get("kept without a phrase", 0) == unphrased


def test_the_cells_preset_groups_everything_the_default_gathers(planned):
    dense, old = planned["density"][0].stats, planned["cells"][0].stats
    assert old.get("dropped_objects", 0) == 0 and old.get("kept without a phrase", 0) == 0
    assert dense["kept"] == old["kept"] and dense["objects"] == old["objects"]  # the same patches and objects
    assert per_patch(dense)["group"] < per_patch(old)["group"]  # fewer, larger groups
    assert per_patch(dense)["objects_per_group"] > per_patch(old)["objects_per_group"]
    assert min(g.count for p in planned["cells"][1] for g in p.groups) == 1  # groups of one, as before


def test_plans_of_the_two_presets_never_mix_in_one_output(tiny_root, tmp_path):
    out = tmp_path / "out"
    run_plan(plan_config(tiny_root, out), progress=False)
    with pytest.raises(ManifestMismatch, match="--overwrite"):
        run_plan(plan_config(tiny_root, out, tiers={"preset": "cells"}), progress=False)
