"""What the LMM is asked for each tier: prompt text from the templates, plus the JSON schema of the reply.

Schemas admit only this patch's valid mark numbers, bound every string with a pattern (no quotes, angle
brackets, backslashes or control characters in a tier sentence) and every array with maxItems.
"""

from __future__ import annotations

from dataclasses import dataclass

from prompts import Template
from pipeline.contracts.records import Group, PlannedObject

PLAIN = r'[^"\\<>\u0000-\u001f]'  # no quotes, backslashes, angle brackets or control characters
MARKUP = r'[^"\\\u0000-\u001f]'  # the merge may write <p> and </p>


def bounded_text(max_len: int, char_class: str) -> dict:
    """A string of 1..max_len characters of a class, as a `pattern`.

    xgrammar 0.2.8 (vLLM's default backend) crashes compiling a repetition bound above 128, and lets control
    characters through `maxLength`; so the pattern is a chain of repetitions of at most 128 each.
    """
    parts, left = [f"{char_class}{{1,{min(max_len, 128)}}}"], max_len - min(max_len, 128)
    while left > 0:
        parts.append(f"{char_class}{{0,{min(left, 128)}}}")
        left -= min(left, 128)
    return {"type": "string", "pattern": "^" + "".join(parts) + "$"}


SENTENCE = bounded_text(300, PLAIN)
DESCRIPTION = bounded_text(800, PLAIN)
MERGED = bounded_text(2000, MARKUP)


@dataclass(frozen=True)
class Ask:
    tier: str  # holistic | instance | group | merge
    key: str  # the tag it is about ("" for holistic and the per-patch instance request)
    prompt: str
    schema: dict
    image: str | None  # "patch" | "som" | None (text only)
    max_tokens: int


def _obj(props: dict) -> dict:
    return {"type": "object", "additionalProperties": False, "required": list(props), "properties": props}


def holistic_ask(t: Template) -> Ask:
    return Ask("holistic", "", t.render(), _obj({"description": DESCRIPTION}), "patch", 256)


def instance_ask(o: PlannedObject, t: Template) -> Ask:
    prompt = t.render(category_name=o.category, pos=o.position, mark_number=o.mark, size=o.size,
                      orientation=o.orientation or "", border="cut by the image border" if o.truncated else "")
    return Ask("instance", o.tag, prompt, _obj({"sentence": SENTENCE}), "som", 96)


def instance_batch_ask(objs: list[PlannedObject], t: Template) -> Ask:
    lines = "\n".join(f"{o.mark}: the {o.category} at the {o.position}" for o in objs)
    item = _obj({"mark": {"type": "integer", "enum": [o.mark for o in objs]}, "sentence": SENTENCE})
    schema = _obj({"objects": {"type": "array", "items": item, "minItems": len(objs), "maxItems": len(objs)}})
    return Ask("instance", "", t.render(object_list=lines), schema, "som", 96 * len(objs))


def group_ask(g: Group, t: Template) -> Ask:
    prompt = t.render(cluster_info=g.quantity, category_name=g.category if g.count == 1 else _plural(g), pos=g.position,
                      count=g.count, cell=g.cell)
    return Ask("group", g.tag, prompt, _obj({"sentence": SENTENCE}), "patch", 96)


def _plural(g: Group) -> str:
    return g.tag.rsplit("-", 1)[0]


def merge_ask(holistic: str, tagged: list[tuple[str, str]], t: Template) -> Ask:
    lines = "\n".join(f"<p> {tag} </p>: {sentence}" for tag, sentence in tagged)
    return Ask("merge", "", t.render(holistic=holistic, tagged_sentences=lines), _obj({"description": MERGED}), None,
               160 + 64 * len(tagged))


def assembled(holistic: str, tagged: list[tuple[str, str]]) -> str:
    """The deterministic merge of LMM texts (the fallback when the merge loses, invents or repeats a tag)."""
    parts = [holistic.strip()] + [f"<p> {tag} </p> [SEG] : {sentence.strip()}" for tag, sentence in tagged]
    return " ".join(p for p in parts if p)
