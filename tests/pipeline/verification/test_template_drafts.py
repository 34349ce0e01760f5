"""The template drafter's own texts pass every check: on hand-made plans of every category, tier and wording
level, and on a tiny planned build (drafted by the real stage and read back)."""

from __future__ import annotations

import itertools

import pyarrow.dataset as ds
import pytest

from annotations import template_drafter
from pipeline.contracts.categories import ISAID
from pipeline.contracts.gcg_schema import records_from_table
from pipeline.contracts.plan_schema import row_to_plan
from pipeline.contracts.records import Group
from pipeline.synthetic.tiny_build import tiny_build
from pipeline.verification.checks import verify_record, verify_texts
from tests.annotations.objects import obj, patch_plan

POSITIONS = {"top left": (120, 120), "top": (400, 110), "top right": (690, 130), "left": (110, 400),
             "center": (400, 400), "right": (680, 420), "bottom left": (130, 690), "bottom": (400, 700),
             "bottom right": (690, 680)}
INSTANCE_CATS = [c for c in ISAID.categories if c.tier == "instance"]
GROUP_CATS = [c for c in ISAID.categories if c.tier == "group"]


def _instance(oid, cat, pos, mark, k, orientation=None, truncated=False):
    cx, cy = POSITIONS[pos]
    o = obj(oid, cat.id, 6000, cx, cy)
    o.bbox = (cx - 40, cy - 40, 80, 80)
    o.tier, o.mark, o.tag, o.position, o.size = "instance", mark, f"{cat.display}-{k}", pos, "medium"
    o.orientation, o.truncated = orientation, truncated
    return o


def _group(gid, cat, k, members, grid, cell, pos):
    for m in members:
        m.group_id, m.position, m.size = gid, pos, "small"
    xs, ys = [m.centroid[0] for m in members], [m.centroid[1] for m in members]
    box = (min(xs) - 5, min(ys) - 5, max(xs) - min(xs) + 10, max(ys) - min(ys) + 10)
    return Group(gid, f"{cat.plural}-{k}", cat.id, cat.display, grid, cell, pos, len(members), "",
                 [m.object_id for m in members], {"size": [800, 800], "counts": ""}, box, 100 * len(members))


def hand_made_plans():
    """Plans that walk every instance category through every position and every group category through its
    grids, counts of one to many, orientations and border cuts."""
    plans = []
    oid = itertools.count(1)
    orientations = [None, "horizontal", "vertical", "diagonal from top left to bottom right",
                    "diagonal from bottom left to top right"]
    for i, pos in enumerate(POSITIONS):
        objects, groups = [], []
        for k, cat in enumerate(INSTANCE_CATS[i % 3::3][:4]):
            objects.append(_instance(next(oid), cat, pos, k + 1, 1, orientations[(i + k) % 5], truncated=k == 1))
        if i % 2:  # two of one category: shared sentences, respectively
            cat = INSTANCE_CATS[i % len(INSTANCE_CATS)]
            other = list(POSITIONS)[(i + 4) % 9]
            objects += [_instance(next(oid), cat, other, len(objects) + 1, 2),
                        _instance(next(oid), cat, pos, len(objects) + 2, 3)]
        cat = GROUP_CATS[i % len(GROUP_CATS)]
        for gk, (n, grid, cell, gpos) in enumerate([(1, "1x1", "whole image", pos), (5, "2x1", "top", "top right"),
                                                     (40, "2x2", "bottom left", "bottom left")][: 1 + i % 3]):
            cx, cy = POSITIONS[gpos]
            members = [obj(next(oid), cat.id, 60, cx + 7 * (j % 6), cy + 7 * (j // 6)) for j in range(n)]
            for m in members:
                m.bbox = (m.centroid[0] - 3, m.centroid[1] - 3, 6, 6)
            groups.append(_group(gk + 1, cat, gk + 1, members, grid, cell, gpos))
            objects += members
        plan = patch_plan(objects, groups)
        plan.patch_id = f"P{i:04d}_0_800_0_800"
        plans.append(plan)
    return plans


@pytest.mark.parametrize("plan", hand_made_plans(), ids=lambda p: p.patch_id)
def test_template_drafts_of_hand_made_plans_pass_every_check(plan):
    d = template_drafter.draft(plan, ISAID)
    failures = verify_texts(plan, d["holistic"], d["instances"], d["groups"], d["description"])
    assert failures == [], (d["description"], failures)


@pytest.fixture(scope="module")
def drafted(tiny_root, tmp_path_factory):
    out = tiny_build(tmp_path_factory.mktemp("verify-template"), splits=("val",), source=tiny_root)
    plans = {r["patch_id"]: row_to_plan(r) for r in ds.dataset(out / "val/plans", format="parquet").to_table().to_pylist()}
    records = records_from_table(ds.dataset(out / "val/records", format="parquet").to_table())
    return plans, records


def test_template_records_of_a_tiny_build_pass_every_check(drafted):
    plans, records = drafted
    assert records and all(r.provenance.drafter == "template" for r in records)
    failures = {r.patch_id: verify_record(plans[r.patch_id], r) for r in records}
    assert not any(failures.values()), {k: v for k, v in failures.items() if v}


def test_template_drafts_of_the_planned_build_pass_every_check(drafted):
    plans, _ = drafted
    for plan in plans.values():
        d = template_drafter.draft(plan, ISAID)
        assert verify_texts(plan, d["holistic"], d["instances"], d["groups"], d["description"]) == [], plan.patch_id
