"""LMM replies are untrusted text: parse them as JSON and validate them against the request's schema again.

The server's structured-output grammar makes most violations impossible, but not all (a random model can emit
byte sequences that decode to U+FFFD and break a length bound counted in characters), so nothing is kept
that does not pass here. Nothing in a reply is ever evaluated.
"""

from __future__ import annotations

import json

from jsonschema import Draft202012Validator


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
    errors = sorted(Draft202012Validator(schema).iter_errors(data), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.path) or "(root)"
        raise ReplyInvalid(f"reply breaks its schema at {where}: {e.message[:200]}", text)
    return data
