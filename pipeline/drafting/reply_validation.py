"""LMM replies are untrusted text: parse them as JSON and validate them against the request's schema again.

The server's structured-output grammar makes most violations impossible, but not all (a random model can emit
byte sequences that decode to U+FFFD and break a length bound counted in characters), so nothing is kept
that does not pass here. Nothing in a reply is ever evaluated.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache

from jsonschema import Draft202012Validator

# `C{a,b}` for a character class C; the request schemas chain these because of xgrammar's 128 bound
_REPEAT = re.compile(r"(\[(?:\\.|[^\]\\])*\])\{(\d+),(\d+)\}")


class ReplyInvalid(ValueError):
    """A reply that is not JSON, is cut off, or breaks its schema; `raw` keeps the text for inspection."""

    def __init__(self, reason: str, raw: str):
        super().__init__(reason)
        self.raw = raw


def response_format(name: str, schema: dict) -> dict:
    """The OpenAI/vLLM `response_format` for a JSON schema."""
    return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}


def parse_reply(text: str, schema: dict, finish_reason: str | None = None) -> dict:
    """The reply as a dict, or ReplyInvalid saying why (cut off at max_tokens, not JSON, schema violation)."""
    if finish_reason == "length":
        raise ReplyInvalid("reply cut off at max_tokens", text)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ReplyInvalid(f"reply is not valid JSON: {exc}", text) from None
    errors = sorted(_validator(json.dumps(schema, sort_keys=True)).iter_errors(data), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.path) or "(root)"
        raise ReplyInvalid(f"reply breaks its schema at {where}: {e.message[:200]}", text)
    return data


def collapse_repeats(pattern: str) -> str:
    """`C{1,128}C{0,128}C{0,44}` -> `C{1,300}`: the same language, but linear for Python's backtracking `re`.

    The chained form is what xgrammar needs on the server; checked here as written, a reply one character over
    its bound backtracks through every split of the string between the repetitions and never finishes."""
    out, last = [], None  # last: [class, lo, hi, index in out]
    pos = 0
    for m in _REPEAT.finditer(pattern):
        if m.start() != pos:
            out.append(pattern[pos:m.start()])
            last = None
        cls, lo, hi = m[1], int(m[2]), int(m[3])
        if last is not None and last[0] == cls:
            last[1] += lo
            last[2] += hi
            out[last[3]] = f"{cls}{{{last[1]},{last[2]}}}"
        else:
            out.append(f"{cls}{{{lo},{hi}}}")
            last = [cls, lo, hi, len(out) - 1]
        pos = m.end()
    out.append(pattern[pos:])
    return "".join(out)


def _python_safe(node):
    if isinstance(node, dict):
        return {k: collapse_repeats(v) if k == "pattern" and isinstance(v, str) else _python_safe(v)
                for k, v in node.items()}
    if isinstance(node, list):
        return [_python_safe(v) for v in node]
    return node


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> Draft202012Validator:
    return Draft202012Validator(_python_safe(json.loads(schema_json)))
