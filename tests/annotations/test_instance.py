"""The instance annotation: the instance/group rule, the per-object and per-patch requests."""

from __future__ import annotations

import prompts
from annotations.instance import assign_tiers, category_tier, instance_ask, instance_batch_ask, instance_sentence
from pipeline.contracts.categories import ISAID
from pipeline.contracts.config import TierRule
from pipeline.contracts.records import PlannedObject
from tests.annotations.objects import BRIDGE, CAR, COURT, HARBOR, PLANE, POOL, SHIP, TANK, obj


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
    chosen = assign_tiers(objs, ISAID, TierRule(min_instance_area=900))
    assert [o.object_id for o in chosen] == [1]  # 900 is enough, 899 is not
    assert [o.tier for o in objs] == ["instance", "group", "group"]  # the car is group-tier whatever its size
    chosen = assign_tiers(objs, ISAID, TierRule(min_instance_area=0))
    assert [o.object_id for o in chosen] == [1, 2]


def test_density_groups_every_object_of_a_crowded_category():
    courts = [obj(10 + i, COURT, 1000 + i) for i in range(5)]
    planes = [obj(20 + i, PLANE, 3000 + i) for i in range(4)]
    objs = courts + planes
    chosen = assign_tiers(objs, ISAID, TierRule(max_instances_per_category=4))
    assert {o.object_id for o in chosen} == {20, 21, 22, 23}  # 4 planes is allowed, 5 courts is not
    assert all(o.tier == "group" for o in courts)
    assert all(o.tier == "instance" for o in planes)
    chosen = assign_tiers(objs, ISAID, TierRule(max_instances_per_category=5))
    assert len(chosen) == 9


def test_density_counts_only_objects_big_enough_to_be_instances():
    big = [obj(i, COURT, 2000) for i in range(1, 4)]
    small = [obj(i, COURT, 100) for i in range(10, 20)]
    chosen = assign_tiers(big + small, ISAID, TierRule(max_instances_per_category=3, min_instance_area=900))
    assert [o.object_id for o in chosen] == [1, 2, 3]
    assert all(o.tier == "group" for o in small)


def test_max_marks_keeps_the_largest():
    objs = [obj(1, PLANE, 1000), obj(2, COURT, 5000), obj(3, PLANE, 3000), obj(4, BRIDGE, 4000), obj(5, HARBOR, 2000)]
    chosen = assign_tiers(objs, ISAID, TierRule(max_marks=3))
    assert [o.object_id for o in chosen] == [2, 4, 3]  # largest first
    assert {o.object_id for o in objs if o.tier == "instance"} == {2, 3, 4}
    assert {o.object_id for o in objs if o.tier == "group"} == {1, 5}


def test_max_marks_ties_broken_by_object_id():
    objs = [obj(7, PLANE, 2000), obj(3, PLANE, 2000), obj(5, COURT, 2000), obj(9, PLANE, 5000)]
    chosen = assign_tiers(objs, ISAID, TierRule(max_marks=3))
    assert [o.object_id for o in chosen] == [9, 3, 5]
    assert next(o for o in objs if o.object_id == 7).tier == "group"


def test_max_marks_zero_marks_nothing():
    objs = [obj(1, PLANE, 5000)]
    assert assign_tiers(objs, ISAID, TierRule(max_marks=0)) == []
    assert objs[0].tier == "group"


def test_assign_tiers_resets_previous_tiers():
    o = obj(1, PLANE, 5000)
    o.tier = "instance"
    assign_tiers([o], ISAID, TierRule(instance_categories=["ship"], group_categories=["plane"]))
    assert o.tier == "group"


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
