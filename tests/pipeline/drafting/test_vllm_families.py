"""The LMM client against a second architecture served by a real vLLM: a tiny random Gemma 3 (`vllm_gemma3_server`,
tests/conftest.py; pipeline/synthetic/tiny_vlm.py), whose chat template, image placement (`<start_of_image>`
expanded by the server into a fixed run of soft tokens) and vocabulary (SentencePiece-style, byte fallback)
differ from the Qwen2-VL of test_lmm_client.py."""

from __future__ import annotations

import asyncio
import base64
import json

import cv2
import httpx
import numpy as np
import pytest

from annotations.ask import PLAIN, bounded_text, object_schema
from pipeline.drafting.lmm_client import Endpoint, LMMClient
from pipeline.drafting.reply_validation import ReplyInvalid, parse_reply, response_format
from pipeline.drafting.schema_probe import probe_structured_output

pytestmark = [pytest.mark.server, pytest.mark.slow]


def png_url(shade: int, box: tuple[int, int, int, int]) -> str:
    img = np.full((120, 160, 3), shade, np.uint8)  # not square: the server resizes it to SigLIP's input
    cv2.rectangle(img, box[:2], box[2:], (255, 255, 255), -1)
    return "data:image/png;base64," + base64.b64encode(cv2.imencode(".png", img)[1].tobytes()).decode()


def messages(text: str, image: str | None) -> list[dict]:
    """As the drafter sends them (image first, then the text), behind a system message Gemma folds into the turn."""
    content = ([{"type": "image_url", "image_url": {"url": image}}] if image else []) + [{"type": "text", "text": text}]
    return [{"role": "system", "content": "You describe aerial images."}, {"role": "user", "content": content}]


def test_gemma3_chat_with_an_image_is_expanded_and_reaches_the_model(vllm_gemma3_server):
    server = vllm_gemma3_server
    soft_tokens = json.loads((server.model_dir / "config.json").read_text())["mm_tokens_per_image"]
    a, b = png_url(90, (20, 20, 60, 80)), png_url(200, (80, 10, 150, 110))

    async def go():
        async with LMMClient([Endpoint(server.url, server.model)], max_in_flight=2) as client:
            return await asyncio.gather(client.chat(messages("Describe the patch.", a), max_tokens=8, temperature=0),
                                        client.chat(messages("Describe the patch.", None), max_tokens=8, temperature=0))
    with_image, text_only = asyncio.run(go())
    assert with_image.finish_reason in ("stop", "length") and with_image.attempts == 1
    # `<start_of_image>` became "\n\n" + boi + soft tokens + eoi + "\n\n" (newline runs are single tokens)
    added = with_image.usage["prompt_tokens"] - text_only.usage["prompt_tokens"]
    assert soft_tokens + 2 <= added <= soft_tokens + 4, (with_image.usage, text_only.usage)

    def first_logprobs(image: str) -> list[float]:
        body = {"model": server.model, "messages": messages("Describe the patch.", image), "max_tokens": 1,
                "temperature": 0, "logprobs": True, "top_logprobs": 5}
        r = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=120)
        r.raise_for_status()
        return [t["logprob"] for t in r.json()["choices"][0]["logprobs"]["content"][0]["top_logprobs"]]
    # the pixels reach the language model: another image, another next-token distribution; the same, the same
    la = first_logprobs(a)
    assert first_logprobs(a) == pytest.approx(la, abs=1e-5)
    assert first_logprobs(b) != pytest.approx(la, abs=1e-3)


def test_gemma3_structured_reply_meets_a_drafting_schema(vllm_gemma3_server):
    """The per-patch instance schema's shape (annotations/instance.py), with a short sentence bound."""
    server = vllm_gemma3_server
    item = object_schema({"mark": {"type": "integer", "enum": [3, 7]}, "sentence": bounded_text(40, PLAIN)})
    schema = object_schema({"objects": {"type": "array", "items": item, "minItems": 2, "maxItems": 2}})
    image = png_url(90, (20, 20, 60, 80))

    async def go():
        async with LMMClient([Endpoint(server.url, server.model)], max_in_flight=4) as client:
            await probe_structured_output(client)  # the server enforces schemas at all
            return await asyncio.gather(*[client.chat(messages(f"Describe marks 3 and 7 ({k}).", image),
                                                      response_format("instance_reply", schema), max_tokens=160,
                                                      temperature=1.0, seed=k) for k in range(6)])
    kept = 0
    for reply in asyncio.run(go()):
        if reply.finish_reason == "length":
            continue
        data = json.loads(reply.text)  # the grammar makes anything but JSON of this shape impossible
        assert len(data["objects"]) == 2 and all(o["mark"] in (3, 7) for o in data["objects"])
        try:
            parse_reply(reply.text, schema, reply.finish_reason)
        except ReplyInvalid as exc:  # a character-counted bound a random model's bytes can still break
            assert "breaks its schema" in str(exc)
            continue
        kept += 1
    assert kept >= 3
