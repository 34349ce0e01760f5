"""The instance annotation: the instance/group rule, the per-object and per-patch requests."""

from __future__ import annotations

import prompts
import re

import pytest

from annotations.instance import (assign_tiers, category_tier, instance_ask, instance_batch_ask, instance_sentence,
                                  instance_sentences, lone_candidates)
from annotations.priors import phrase_list
from pipeline.contracts.categories import ISAID
from pipeline.contracts.config import TierRule
from pipeline.contracts.records import PlannedObject
from tests.annotations.objects import BRIDGE, CAR, COURT, HARBOR, LV, PLANE, POOL, SHIP, TANK, obj

CELLS = TierRule(preset="cells")
PLURAL = {c.id: c.plural for c in ISAID.categories}


# ---------------------------------------------------------------- category_tier


def test_category_tier_defaults():
    rule = TierRule()
    for cat in ISAID.categories:
        assert category_tier(cat, rule) == cat.tier
    assert category_tier(ISAID[PLANE], rule) == "instance"
    assert category_tier(ISAID[COURT], rule) == "instance"
    assert category_tier(ISAID[CAR], rule) == "group"
    assert category_tier(ISAID[SHIP], rule) == "group"


def test_category_tier_explicit_lists_override_defaults():
    rule = TierRule(instance_categories=["ship"], group_categories=["plane"])
    assert category_tier(ISAID[SHIP], rule) == "instance"
    assert category_tier(ISAID[PLANE], rule) == "group"
    # listed nowhere while both lists are given: group
    assert category_tier(ISAID[COURT], rule) == "group"
    assert category_tier(ISAID[CAR], rule) == "group"


def test_category_tier_matches_source_names_and_display_words():
    rule = TierRule(instance_categories=["Small_Vehicle", "storage tank"])
    assert category_tier(ISAID[CAR], rule) == "instance"  # source name
    assert category_tier(ISAID[TANK], rule) == "instance"  # display word
    assert category_tier(ISAID[SHIP], rule) == "group"  # unlisted: its default
    assert category_tier(ISAID[PLANE], rule) == "instance"  # unlisted: its default


def test_category_tier_only_a_group_list():
    rule = TierRule(group_categories=["Harbor", "bridge"])
    assert category_tier(ISAID[HARBOR], rule) == "group"
    assert category_tier(ISAID[BRIDGE], rule) == "group"
    assert category_tier(ISAID[PLANE], rule) == "instance"
    assert category_tier(ISAID[POOL], rule) == "group"


def test_category_tier_instance_list_wins_over_group_list():
    rule = TierRule(instance_categories=["plane"], group_categories=["plane"])
    assert category_tier(ISAID[PLANE], rule) == "instance"


# ---------------------------------------------------------------- assign_tiers


def test_area_threshold():
    objs = [obj(1, PLANE, 900), obj(2, PLANE, 899), obj(3, CAR, 5000)]
    chosen = assign_tiers(objs, ISAID, TierRule(preset="cells", min_instance_area=900))
    assert [o.object_id for o in chosen] == [1]  # 900 is enough, 899 is not
    assert [o.tier for o in objs] == ["instance", "group", "group"]  # the car is group-tier whatever its size
    chosen = assign_tiers(objs, ISAID, TierRule(preset="cells", min_instance_area=0))
    assert [o.object_id for o in chosen] == [1, 2]


def test_density_groups_every_object_of_a_crowded_category():
    courts = [obj(10 + i, COURT, 1000 + i) for i in range(5)]
    planes = [obj(20 + i, PLANE, 3000 + i) for i in range(4)]
    objs = courts + planes
    for rule in (TierRule(preset="cells", max_instances_per_category=4), TierRule(max_instances_per_category=4)):
        chosen = assign_tiers(objs, ISAID, rule)
        assert {o.object_id for o in chosen} == {20, 21, 22, 23}  # 4 planes is allowed, 5 courts is not
        assert all(o.tier == "group" for o in courts)  # too dense to mark, even though too few to group
        assert all(o.tier == "instance" for o in planes)
    chosen = assign_tiers(objs, ISAID, TierRule(preset="cells", max_instances_per_category=5))
    assert len(chosen) == 9


def test_density_counts_only_objects_big_enough_to_be_instances():
    big = [obj(i, COURT, 2000) for i in range(1, 4)]
    small = [obj(i, COURT, 100) for i in range(10, 20)]
    chosen = assign_tiers(big + small, ISAID, TierRule(preset="cells", max_instances_per_category=3, min_instance_area=900))
    assert [o.object_id for o in chosen] == [1, 2, 3]
    assert all(o.tier == "group" for o in small)


def test_max_marks_keeps_the_largest():
    objs = [obj(1, PLANE, 1000), obj(2, COURT, 5000), obj(3, PLANE, 3000), obj(4, BRIDGE, 4000), obj(5, HARBOR, 2000)]
    chosen = assign_tiers(objs, ISAID, TierRule(preset="cells", max_marks=3))
    assert [o.object_id for o in chosen] == [2, 4, 3]  # largest first
    assert {o.object_id for o in objs if o.tier == "instance"} == {2, 3, 4}
    assert {o.object_id for o in objs if o.tier == "group"} == {1, 5}


def test_max_marks_ties_broken_by_object_id():
    objs = [obj(7, PLANE, 2000), obj(3, PLANE, 2000), obj(5, COURT, 2000), obj(9, PLANE, 5000)]
    chosen = assign_tiers(objs, ISAID, TierRule(preset="cells", max_marks=3))
    assert [o.object_id for o in chosen] == [9, 3, 5]
    assert next(o for o in objs if o.object_id == 7).tier == "group"


def test_max_marks_zero_marks_nothing():
    objs = [obj(1, PLANE, 5000)]
    assert assign_tiers(objs, ISAID, TierRule(max_marks=0)) == []
    assert objs[0].tier == "group"


def test_assign_tiers_resets_previous_tiers():
    o = obj(1, PLANE, 5000)
    o.tier = "instance"
    assign_tiers([o], ISAID, TierRule(preset="cells", instance_categories=["ship"], group_categories=["plane"]))
    assert o.tier == "group"


# ---------------------------------------------------------------- lone objects (density preset)


def test_a_lone_large_group_tier_object_becomes_an_instance_and_a_small_one_does_not():
    ship, boat = obj(1, SHIP, 3000, 100, 100), obj(2, SHIP, 200, 700, 700)
    cars = [obj(10 + i, CAR, 200, 300 + 10 * i, 400) for i in range(7)]
    chosen = assign_tiers([ship, boat, *cars], ISAID, TierRule())
    assert [o.object_id for o in chosen] == [1]  # two ships are too few to group: the big one is marked
    assert boat.tier == "group" and all(c.tier == "group" for c in cars)  # the boat is left for the group rule
    assert assign_tiers([ship, boat, *cars], ISAID, CELLS) == []  # the cells preset groups them both


def test_lone_candidates_need_too_few_to_group_and_enough_area():
    trucks = [obj(i, LV, 1200, 100 * i, 100) for i in range(1, 6)]  # five, min_group_size six
    assert [o.object_id for o in lone_candidates(trucks, set(), TierRule())] == [1, 2, 3, 4, 5]
    assert lone_candidates(trucks, set(), TierRule(min_group_size=5)) == []  # five can be a group
    assert lone_candidates(trucks, set(), TierRule(min_instance_area=1201)) == []  # too small to mark
    assert lone_candidates(trucks, {1, 2}, TierRule(max_instances_per_category=2)) == []  # three left: too dense
    assert lone_candidates(trucks, set(), CELLS) == []  # groups of one: nothing is too few
    assert assign_tiers(trucks, ISAID, TierRule(lone_objects="drop")) == []  # too few to group, and not marked


def test_promoted_objects_share_max_marks_largest_first():
    objs = [obj(1, PLANE, 2000), obj(2, TANK, 5000), obj(3, POOL, 1000)]
    chosen = assign_tiers(objs, ISAID, TierRule(max_marks=2))
    assert [o.object_id for o in chosen] == [2, 1] and objs[2].tier == "group"


# ---------------------------------------------------------------- requests


def _obj(mark, tag, pos="top left"):
    return PlannedObject(mark, 4, "tennis court", {}, (0, 0, 1, 1), 1, (0, 0), pos, "small", 0.0, "vertical", 90.0,
                         3.0, True, tier="instance", mark=mark, tag=tag)


def test_instance_prompt_is_the_papers_with_priors_filled_in():
    ask = instance_ask(_obj(3, "tennis court-1"), prompts.load("instance"))
    assert ask.prompt == ("List down all the attributes of the tennis court at the top left that is marked with number 3 "
                          "in one short sentence. Do not mention the marked number in output.")
    assert ask.image == "som" and set(ask.schema["required"]) == {"sentence"}


def test_batch_schema_admits_exactly_the_patch_marks():
    ask = instance_batch_ask([_obj(1, "tennis court-1"), _obj(4, "tennis court-2", "right")], prompts.load("instance_batch"))
    items = ask.schema["properties"]["objects"]
    assert items["minItems"] == items["maxItems"] == 2 and items["items"]["properties"]["mark"]["enum"] == [1, 4]
    assert "4: the tennis court at the right" in ask.prompt


def test_template_sentences_read_naturally():
    o = PlannedObject(1, 4, "tennis court", {}, (0, 0, 1, 1), 1, (0, 0), "top left", "small", 0.0, "vertical", 90.0,
                      3.0, False, tier="instance", mark=1, tag="tennis court-1")
    assert instance_sentence(o) == "The <p> tennis court-1 </p> [SEG] is a small tennis court at the top left, oriented vertically."
    o.orientation, o.truncated = "diagonal from top left to bottom right", True
    assert instance_sentence(o).endswith("running diagonally from top left to bottom right, partly cut by the image border.")


# ---------------------------------------------------------------- the caption's instance sentences


def _inst(oid, cat, mark, tag, pos, size="medium", **kw):
    o = obj(oid, cat, 6000, 400, 400)
    o.tier, o.mark, o.tag, o.position, o.size = "instance", mark, tag, pos, size
    for k, v in kw.items():
        setattr(o, k, v)
    return o


def test_phrase_list_is_geopixelds():
    assert phrase_list(["a-1"]) == "<p> a-1 </p> [SEG]"
    assert phrase_list(["a-1", "a-2"]) == "<p> a-1 </p> [SEG] and <p> a-2 </p> [SEG]"
    assert phrase_list(["tennis court-2", "tennis court-3", "tennis court-4"]) == (
        "<p> tennis court-2 </p> [SEG] , <p> tennis court-3 </p> [SEG] , and <p> tennis court-4 </p> [SEG]")


def test_same_category_instances_share_one_sentence_in_mark_order():
    objs = [_inst(1, COURT, 1, "tennis court-1", "bottom right"), _inst(2, PLANE, 2, "plane-1", "top left"),
            _inst(3, COURT, 3, "tennis court-2", "bottom right"), _inst(4, COURT, 4, "tennis court-3", "bottom right")]
    for key in ("P0001", "P0002", "P0003"):
        court, plane = instance_sentences(objs, PLURAL, key, level=1)
        assert court.startswith("The <p> tennis court-1 </p> [SEG] , <p> tennis court-2 </p> [SEG] , and "
                                "<p> tennis court-3 </p> [SEG]")
        assert "tennis courts" in court and "at the bottom right" in court and " are " in court
        assert plane.count("<p> plane-1 </p> [SEG]") == 1 and "at the top left" in plane.lower()
        assert not re.search(r"plane-1 </p> \[SEG\] (are|were)\b", plane)  # a singular tag, singular words


def test_instance_positions_follow_their_tags():
    objs = [_inst(1, PLANE, 1, "plane-1", "left"), _inst(2, PLANE, 2, "plane-2", "right")]
    (text,) = instance_sentences(objs, PLURAL, "P0001", level=1)
    assert "at the left and right respectively" in text


def test_instance_details_agree_in_number():
    objs = [_inst(1, PLANE, 1, "plane-1", "left", truncated=True), _inst(2, PLANE, 2, "plane-2", "left"),
            _inst(3, PLANE, 3, "plane-3", "left", truncated=True)]
    text = " ".join(instance_sentences(objs, PLURAL, "P0001", level=0))
    assert "two of them partly cut by the image border" in text
    (one,) = instance_sentences(objs[:1], PLURAL, "P0001", level=0)
    assert "partly cut by the image border" in one and "of them" not in one and "all " not in one


@pytest.mark.parametrize("size, cat, tag, expect", [
    ("small", LV, "large vehicle-1", "a large vehicle"), ("large", PLANE, "plane-1", "a large plane")])
def test_a_category_that_names_a_size_takes_no_second_one(size, cat, tag, expect):
    (text,) = instance_sentences([_inst(1, cat, 1, tag, "center", size)], PLURAL, "P0001", level=1)
    assert expect in text and "small large" not in text
