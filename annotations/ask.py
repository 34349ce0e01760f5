"""What every LMM request shares: the `Ask` record and the string bounds its reply schema is built from.

Each annotation module (holistic, instance, group, merge) turns its prompt template and plan record into an
`Ask`; the drafting stage sends it and validates the reply against `Ask.schema`. Schemas bound every string
with a pattern (no quotes, angle brackets, backslashes or control characters in a tier sentence) and every
array with maxItems, or a weak model runs to `max_tokens`.
"""

from __future__ import annotations

from dataclasses import dataclass

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


SENTENCE = bounded_text(300, PLAIN)  # one instance or group sentence


def object_schema(props: dict) -> dict:
    """A JSON object with exactly these properties, all required, nothing else."""
    return {"type": "object", "additionalProperties": False, "required": list(props), "properties": props}


@dataclass(frozen=True)
class Ask:
    """One LMM request: the rendered prompt, the schema its reply must meet, the image it looks at."""

    tier: str  # holistic | instance | group | merge
    key: str  # the tag it is about ("" for holistic and the per-patch instance request)
    prompt: str
    schema: dict
    image: str | None  # "patch" | "som" | None (text only)
    max_tokens: int
