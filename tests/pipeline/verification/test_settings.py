"""VerifySettings: validated and frozen, and every setting changes what the checks accept the way it says."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipeline.verification.checks import Failure, verify_record, verify_texts
from pipeline.verification.settings import ALL_CHECKS, LengthBounds, VerifySettings
from pipeline.contracts.gcg_schema import GCGRecord, Provenance, TaggedText
from tests.pipeline.verification.plans import group_plan, instance_plan, scene_plan


def checks(plan, settings=VerifySettings(), holistic=None, instances=None, groups=None, description=None):
    return sorted({f.check for f in verify_texts(plan, holistic, instances or {}, groups or {}, description, settings)})


@pytest.mark.parametrize("bad", [
    {"nonsense": 1}, {"position_tolerance": 3}, {"position_tolerance": -1}, {"extent_margin": 0.9},
    {"approx_tolerance": float("nan")}, {"checks": ["category", "spelling"]}, {"truncation_min_words": 0},
    {"lengths": {"instance": {"min_chars": 10, "max_chars": 5}}}, {"vague_counts": {"some": [3, -1]}},
])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValidationError):
        VerifySettings.model_validate(bad)


def test_settings_are_frozen_and_documented():
    s = VerifySettings()
    with pytest.raises(ValidationError):
        s.position_tolerance = 1
    assert s.checks == ALL_CHECKS
    assert all(f.description for f in VerifySettings.model_fields.values())
    assert VerifySettings.model_validate(s.model_dump(mode="json")) == s


def test_failures_are_frozen_records():
    f = Failure("instance", "plane-1", "position", "says 'top left', ...")
    with pytest.raises(AttributeError):
        f.detail = "other"


def test_tolerance_admits_neighbouring_cells():
    plan, tag = instance_plan("plane", "center")
    text = {tag: "A white airliner is parked in the upper-left corner."}
    assert checks(plan, instances=text) == ["position"]
    assert checks(plan, VerifySettings(position_tolerance=1), instances=text) == []


def test_extent_admits_the_cells_a_box_reaches():
    plan, tag = instance_plan("bridge", "center", bbox=(100, 360, 600, 80))  # spans left, center and right
    text = {tag: "A long bridge crosses the river on the left side of the image."}
    assert checks(plan, instances=text) == []
    assert checks(plan, VerifySettings(position_extent=False), instances=text) == ["position"]


def test_group_tolerance_is_its_own():
    plan, tag = group_plan("ship", 8, "2x2", "top left", "top left")
    text = {tag: "Eight boats are moored in the lower-left corner."}
    assert checks(plan, groups=text) == ["position"]
    assert checks(plan, VerifySettings(group_position_tolerance=1), groups=text) == []


def test_synonyms_are_added_or_replaced():
    plan, tag = instance_plan("plane", "top")
    text = {tag: "A white Cessna is parked at the top."}
    helicopter = {tag: "A white Cessna is parked at the top, next to a helicopter."}
    assert checks(plan, instances=helicopter) == []  # "Cessna" names nothing: the helicopter is a relation
    assert checks(plan, VerifySettings(synonyms={"helicopter": ["cessna"]}), instances=text) == ["category"]
    assert checks(plan, VerifySettings(synonyms={"plane": ["cessna"]}), instances=text) == []
    only = VerifySettings(synonym_overrides={"plane": ["plane"]})
    assert checks(plan, only, instances={tag: "A white jet is parked at the top."}) == []  # "jet" names nothing now


def test_require_category_mention():
    plan, tag = instance_plan("plane", "top")
    text = {tag: "White fuselage, swept wings and two engines, parked at the top."}
    assert checks(plan, instances=text) == []
    assert checks(plan, VerifySettings(require_category_mention=True), instances=text) == ["category"]


def test_vague_counts_and_approximation():
    plan, tag = group_plan("small vehicle", 12, "1x1", "whole image", "center")
    assert checks(plan, groups={tag: "Several cars are parked in the lot."}) == []
    strict = VerifySettings(vague_counts={"several": (3, 7)})
    assert checks(plan, strict, groups={tag: "Several cars are parked in the lot."}) == ["count"]
    assert checks(plan, groups={tag: "About ten cars are parked in the lot."}) == []
    assert checks(plan, VerifySettings(approx_tolerance=0.1), groups={tag: "About ten cars are parked in the lot."}) == ["count"]


def test_lengths_and_truncation():
    plan, tag = instance_plan("plane", "top")
    assert checks(plan, VerifySettings(lengths={"instance": {"min_chars": 80}}),
                  instances={tag: "A white plane at the top."}) == ["form"]
    assert LengthBounds(min_chars=0, max_chars=None).max_chars is None
    unpunctuated = {tag: "A white plane with two engines parked at the top near the terminal"}
    assert checks(plan, instances=unpunctuated) == ["form"]
    assert checks(plan, VerifySettings(truncation_min_words=50), instances=unpunctuated) == []


def test_implied_categories_may_be_named():
    plan = scene_plan([("ground track field", "center")])
    text = "A running track encloses a soccer field in the middle of the image."
    assert checks(plan, holistic=text) == []
    assert checks(plan, VerifySettings(implied={}), holistic=text) == ["absent"]


def test_checks_can_be_switched_off():
    plan, tag = instance_plan("plane", "top")
    text = {tag: "Two planes marked 3 sit in the bottom right corner"}
    assert checks(plan, instances=text) == ["count", "form", "leakage", "position"]
    assert checks(plan, VerifySettings(checks=("count", "leakage")), instances=text) == ["count", "leakage"]
    assert checks(plan, VerifySettings(checks=()), instances=text) == []


def test_texts_not_drafted_are_not_checked_and_unknown_tags_are_named():
    plan, tag = instance_plan("plane", "top")
    assert verify_texts(plan, None, {}, {}, None) == []
    assert checks(plan, holistic="") == ["form"]
    (f,) = verify_texts(plan, None, {"plane-9": "A white plane at the top."}, {}, None)
    assert (f.tier, f.tag, f.check) == ("instance", "plane-9", "category")


def test_verify_record_reads_a_records_texts():
    plan, tag = instance_plan("plane", "top")
    record = GCGRecord.for_plan(plan, Provenance("lmm"), holistic="An aerial view of an airport with one plane.",
                                instance_texts=[TaggedText(tag, "A ship is moored at the top.")],
                                description="An airport. A white <p> plane-1 </p> [SEG] is parked at the top.")
    assert [(f.tier, f.check) for f in verify_record(plan, record)] == [("instance", "category")]
