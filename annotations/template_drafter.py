"""The offline template drafter: each annotation's template sentence from the spatial priors, no model.

It is the default when no vLLM endpoint is configured and the baseline LMM output is compared against;
its records say `drafter: template` in their provenance so they are never mistaken for LMM text. The
sentences live with their annotation (holistic.py, instance.py, group.py), the assembly in merge.py.

A caption has GeoPixelD's shape: a short scene summary, instance sentences (same-category instances share one),
group sentences, a closing remark. It is at most `MAX_CHARS` characters: a crowded patch is worded more
tersely, level by level (`caption`), never by leaving a phrase out, since every planned tag must appear exactly
once as `<p> tag </p> [SEG]` (each [SEG] is grounded to its mask). Levels 0-3 keep each phrase's place and a
group's exact count (what the verification's merge check asks of a merged caption); the last, the scene and the
phrases listed, keeps only the phrases. Only when even that is longer, because the phrases alone need more, is
the cap exceeded. Wording varies with the patch id, never between runs.
"""

from __future__ import annotations

from pipeline.contracts.categories import Vocabulary
from pipeline.contracts.records import PatchPlan, PlannedObject

from annotations.group import group_place, group_sentence
from annotations.holistic import border_sentence, closing_remark, holistic_parts, holistic_sentences, layout_sentence
from annotations.instance import instance_sentence, instance_sentences
from annotations.merge import assemble
from annotations.priors import listing, number, phrase, phrase_list

DRAFTER = "template"
VERSION = "2"
MAX_CHARS = 1200  # GeoPixelD's captions average 740 characters (train); see docs/benchmarks.md
LEVELS = 5  # wordings from fullest (0) to the bare list of phrases (LEVELS - 1)


def _listed(plan: PatchPlan, instances: list[PlannedObject], width: int, height: int) -> str:
    """Level 3: one sentence listing every phrase with its place (and a group's count), nothing else."""
    by_id = {o.object_id: o for o in plan.objects}
    items = [f"{phrase(o.tag)} at the {o.position}" for o in instances]
    items += [f"{number(g.count)} {phrase(g.tag)} {group_place(g, [by_id[i] for i in g.member_ids], width, height)}"
              for g in plan.groups]
    return f"It shows {listing(items, ', ', ', and ' if len(items) > 2 else ' and ')}." if items else ""


def caption(plan: PatchPlan, vocab: Vocabulary, level: int) -> str:
    """The caption at one level of wording: 0 is fullest, 3 lists the phrases with their places, 4 bare."""
    parts = holistic_parts(plan, vocab, most=4 if level == 0 else 3)
    instances = sorted(plan.instances, key=lambda o: o.mark)
    if level >= 3:
        if level == 3:
            body = _listed(plan, instances, plan.width, plan.height)
        else:
            tags = [o.tag for o in instances] + [g.tag for g in plan.groups]
            body = f"It shows {phrase_list(tags)}." if tags else ""
        return assemble(parts[0], [body], [])
    by_id = {o.object_id: o for o in plan.objects}
    plural = {c.id: c.plural for c in vocab.categories}
    inst = instance_sentences(instances, plural, plan.patch_id, level, plan.objects, 0.15 * max(plan.width, plan.height))
    grp = [group_sentence(g, vocab, [by_id[i] for i in g.member_ids], plan.width, plan.height, plan.patch_id, level)
           for g in plan.groups]
    summary = " ".join(parts[:3] + [layout_sentence(plan)] if level == 0 else parts[:2] if level == 1 else parts[:1])
    closing = closing_remark(plan, vocab, 2 if level == 0 else 1)
    if level == 0:
        closing = f"{border_sentence(plan)} {closing}"
    return assemble(summary, inst, grp, closing)


def draft(plan: PatchPlan, vocab: Vocabulary) -> dict:
    """All tier texts and the merged description of one plan: holistic, instances by mark, groups, description.

    The description is the fullest wording within MAX_CHARS (`caption`); the tier texts are one per tag."""
    h = holistic_sentences(plan, vocab)
    by_id = {o.object_id: o for o in plan.objects}
    inst = {o.tag: instance_sentence(o) for o in sorted(plan.instances, key=lambda o: o.mark)}
    grp = {g.tag: group_sentence(g, vocab, [by_id[i] for i in g.member_ids], plan.width, plan.height, plan.patch_id)
           for g in plan.groups}
    for level in range(LEVELS):
        description = caption(plan, vocab, level)
        if len(description) <= MAX_CHARS:
            break
    return {"holistic": h, "instances": inst, "groups": grp, "description": description}
