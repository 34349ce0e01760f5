"""The offline template drafter: each annotation's template sentence from the spatial priors, no model.

It is the default when no vLLM endpoint is configured and the baseline LMM output is compared against;
its records say `drafter: template` in their provenance so they are never mistaken for LMM text. The
sentences live with their annotation (holistic.py, instance.py, group.py), the assembly in merge.py.
"""

from __future__ import annotations

from pipeline.contracts.categories import Vocabulary
from pipeline.contracts.records import PatchPlan

from annotations.group import group_sentence
from annotations.holistic import holistic_sentences
from annotations.instance import instance_sentence
from annotations.merge import assemble

DRAFTER = "template"
VERSION = "1"


def draft(plan: PatchPlan, vocab: Vocabulary) -> dict:
    """All tier texts and the merged description of one plan: holistic, instances by mark, groups, description."""
    h = holistic_sentences(plan, vocab)
    inst = {o.tag: instance_sentence(o) for o in sorted(plan.instances, key=lambda o: o.mark)}
    grp = {g.tag: group_sentence(g, vocab) for g in plan.groups}
    return {"holistic": h, "instances": inst, "groups": grp,
            "description": assemble(h, list(inst.values()), list(grp.values()))}
