"""Prove that an LMM server enforces `response_format` before drafting with it.

vLLM removed the `guided_json` request fields in v0.12 and ignores them without an error (HTTP 200, free text);
a server started without a structured-output backend, or one behind a proxy that drops the field, answers a
JSON-schema request the same way. Every reply is validated again (`reply_validation.parse_reply`), so nothing
wrong is kept, but a whole run would then fail reply by reply with "not valid JSON". This probe sends one
request per endpoint whose schema admits exactly one reply, `{"probe": "<token>"}`, where `<token>` is a fresh
random string that appears only in the schema, never in the prompt: a model can write it only if the server's
grammar made it. Anything else raises `StructuredOutputIgnored`, naming the endpoint and what came back.
"""

from __future__ import annotations

import asyncio
import json
import secrets

from pipeline.drafting.lmm_client import Endpoint, LMMClient
from pipeline.drafting.reply_validation import response_format

PROBE_PROMPT = "Reply with a JSON object."  # deliberately says nothing of the token or the key


class StructuredOutputIgnored(RuntimeError):
    """An endpoint answered a JSON-schema request with a reply its schema forbids: it ignores `response_format`."""

    def __init__(self, message: str, failures: list[tuple[str, str]]):
        super().__init__(message)
        self.failures = failures  # (chat URL, the reply as quoted in the message) of each endpoint that ignored it


def probe_schema(token: str) -> dict:
    """The schema the probe sends: one required property whose only admitted value is `token`."""
    return {"type": "object", "additionalProperties": False, "required": ["probe"],
            "properties": {"probe": {"type": "string", "enum": [token]}}}


async def probe_endpoint(endpoint: Endpoint, *, token: str | None = None, max_tokens: int = 64,
                         timeout: float = 60.0, retries: int = 2) -> str | None:
    """One probe of one endpoint: None if the reply is exactly the one the schema admits, else what came back.

    Transport failures and refusals propagate as the client raises them (`LMMUnavailable`, `LMMRequestError`):
    a server that refuses a JSON-schema request already fails loudly."""
    token = token or "gpx-" + secrets.token_hex(6)
    schema = probe_schema(token)
    async with LMMClient([endpoint], max_in_flight=1, timeout=timeout, retries=retries) as client:
        reply = await client.chat([{"role": "user", "content": PROBE_PROMPT}], response_format("schema_probe", schema),
                                  max_tokens=max_tokens, temperature=0, seed=0)
    try:
        data = json.loads(reply.text)
    except ValueError:
        data = None
    if data == {"probe": token}:
        return None
    admitted = json.dumps({"probe": token})
    return f"{reply.text[:200]!r} (finish_reason {reply.finish_reason}; the schema admitted only {admitted})"


async def probe_structured_output(client: LMMClient, *, max_tokens: int = 64, timeout: float = 60.0) -> None:
    """Probe every endpoint of `client` (each with its own served model name), concurrently; one request each.

    Raises `StructuredOutputIgnored` naming every endpoint whose reply broke the probe's schema. Uses its own
    short-lived connections (the client's pool and counters are not touched) and never the reply cache."""
    endpoints = list(dict.fromkeys(client.endpoints))
    results = await asyncio.gather(*(probe_endpoint(e, max_tokens=max_tokens, timeout=timeout, retries=client.retries)
                                     for e in endpoints))
    failures = [(e.chat_url, got) for e, got in zip(endpoints, results) if got is not None]
    if failures:
        lines = "; ".join(f"{url} answered {got}" for url, got in failures)
        raise StructuredOutputIgnored(
            f"{len(failures)} of {len(endpoints)} LMM endpoint(s) ignored response_format (JSON-schema structured "
            f"output): {lines}. Start vLLM with a structured-outputs backend (e.g. --structured-outputs-config "
            "'{\"backend\":\"xgrammar\",\"disable_any_whitespace\":true}'), and check that nothing between the client "
            "and the server drops `response_format` (vLLM >= 0.12 ignores the old `guided_json` field silently).",
            failures)
