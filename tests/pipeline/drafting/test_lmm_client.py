"""The LMM client against a real vLLM server: structured output, keys, load spread, retries, failures."""

from __future__ import annotations

import asyncio
import base64
import json

import cv2
import numpy as np
import pytest

from pipeline.drafting.lmm_client import Endpoint, LMMClient, LMMRequestError, LMMUnavailable
from pipeline.drafting.reply_validation import ReplyInvalid, parse_reply
from tests.conftest import API_KEY
from pipeline.synthetic.vllm_server import free_port

pytestmark = [pytest.mark.server, pytest.mark.slow]


def image_message(text: str) -> list[dict]:
    img = np.full((112, 112, 3), 90, np.uint8)
    cv2.rectangle(img, (20, 20), (60, 80), (255, 255, 255), -1)
    b64 = base64.b64encode(cv2.imencode(".png", img)[1].tobytes()).decode()
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64}"}},
                                         {"type": "text", "text": text}]}]


MARK_SCHEMA = {
    "type": "json_schema",
    "json_schema": {"name": "marks", "strict": True, "schema": {
        "type": "object", "additionalProperties": False, "required": ["mark", "sentence"],
        "properties": {"mark": {"type": "integer", "enum": [3, 7]},
                       "sentence": {"type": "string", "pattern": "^[^\"\\\\\\u0000-\\u001f]{1,40}$"}}}},
}


def run(coro):
    return asyncio.run(coro)


def test_structured_reply_admits_only_valid_marks_and_is_validated_again(vllm_server):
    async def go():
        ep = Endpoint(vllm_server.url, vllm_server.model, vllm_server.api_key_env)
        async with LMMClient([ep], max_in_flight=4) as client:
            return await asyncio.gather(*[client.chat(image_message(f"Describe mark {k}."), MARK_SCHEMA,
                                                      max_tokens=64, temperature=1.0, seed=k) for k in range(12)])
    schema = MARK_SCHEMA["json_schema"]["schema"]
    kept = 0
    for reply in run(go()):
        assert reply.usage["prompt_tokens"] > 0 and reply.attempts == 1
        assert json.loads(reply.text)["mark"] in (3, 7)  # the grammar makes an invented mark impossible
        try:
            data = parse_reply(reply.text, schema, reply.finish_reason)
        except ReplyInvalid as exc:  # a random model can still break a bound: refused here, raw text kept
            assert exc.raw == reply.text
            continue
        kept += 1
        assert 1 <= len(data["sentence"]) <= 40 and '"' not in data["sentence"]
    assert kept > 0


def test_cut_off_reply_is_refused(vllm_server):
    async def go():
        ep = Endpoint(vllm_server.url, vllm_server.model, vllm_server.api_key_env)
        async with LMMClient([ep]) as client:
            return await client.chat(image_message("Describe."), MARK_SCHEMA, max_tokens=3, temperature=0)
    reply = run(go())
    assert reply.finish_reason == "length"
    with pytest.raises(ReplyInvalid, match="cut off"):
        parse_reply(reply.text, MARK_SCHEMA["json_schema"]["schema"], reply.finish_reason)


def test_load_is_spread_over_endpoints(vllm_server):
    port = vllm_server.url.rsplit(":", 1)[1]
    eps = [Endpoint(vllm_server.url, "tiny", vllm_server.api_key_env),
           Endpoint(f"http://localhost:{port}/v1", "tiny", vllm_server.api_key_env)]

    async def go():
        async with LMMClient(eps, max_in_flight=8) as client:
            await asyncio.gather(*[client.chat(image_message("Hi."), max_tokens=4) for _ in range(8)])
            return client.state.sent
    sent = run(go())
    assert sorted(sent.values()) == [4, 4]


def test_missing_key_is_refused_without_leaking_the_key(vllm_server, monkeypatch):
    monkeypatch.setenv("WRONG_KEY_ENV", "not-the-key")
    async def go():
        async with LMMClient([Endpoint(vllm_server.url, "tiny", "WRONG_KEY_ENV")], retries=0) as client:
            await client.chat(image_message("Hi."), max_tokens=4)
    with pytest.raises(LMMRequestError, match="HTTP 401") as err:
        run(go())
    assert API_KEY not in str(err.value) and "not-the-key" not in str(err.value)


def test_down_endpoint_fails_over_then_reports_what_was_tried(vllm_server):
    dead = f"http://127.0.0.1:{free_port()}"

    async def failover():
        eps = [Endpoint(dead, "tiny"), Endpoint(vllm_server.url, "tiny", vllm_server.api_key_env)]
        async with LMMClient(eps, retries=2, backoff=0.01) as client:
            return [await client.chat(image_message("Hi."), max_tokens=4) for _ in range(3)]
    assert all(r.endpoint == vllm_server.url for r in run(failover()))

    async def all_dead():
        async with LMMClient([Endpoint(dead, "tiny")], retries=2, backoff=0.01) as client:
            await client.chat(image_message("Hi."), max_tokens=4)
    with pytest.raises(LMMUnavailable) as err:
        run(all_dead())
    assert dead in str(err.value) and "3 attempt(s)" in str(err.value) and "ConnectError" in str(err.value)
