"""The structured-output probe: passes on a vLLM that enforces `response_format`, names a server that ignores it.

The server that ignores the schema is a small OpenAI-style HTTP server in a thread answering with the text it is
given: that misbehaviour is what is under test (vLLM >= 0.12 answers the removed `guided_json` field this way)."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline.drafting.lmm_client import Endpoint, LMMClient
from pipeline.drafting.schema_probe import PROBE_PROMPT, StructuredOutputIgnored, probe_structured_output


class FakeServer:
    """`/v1/chat/completions` answering `reply(body)`; every request body is kept."""

    def __init__(self, reply):
        self.bodies: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.bodies.append(body)
                data = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply(body)},
                                                "finish_reason": "stop"}],
                                   "usage": {"prompt_tokens": 9, "completion_tokens": 12}}).encode()
                self.send_response(200 if self.path == "/v1/chat/completions" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def schema_token(body: dict) -> str:
    return body["response_format"]["json_schema"]["schema"]["properties"]["probe"]["enum"][0]


def honours(body: dict) -> str:
    """What an enforcing server's grammar leaves a model: the one admitted object."""
    return json.dumps({"probe": schema_token(body)})


def probe(endpoints: list[Endpoint]) -> None:
    async def go():
        async with LMMClient(endpoints, retries=0) as client:
            await probe_structured_output(client)
    asyncio.run(go())


@pytest.mark.parametrize("free_text", [
    "Sure! Here is a JSON object: {\"answer\": 42}",  # no grammar at all
    '{"probe": "ok"}',  # JSON mode without the schema: valid JSON, wrong value
    "```json\n{\"probe\": \"gpx-000000000000\"}\n```",  # a guess wrapped in markdown
])
def test_a_server_that_ignores_the_schema_is_named_with_its_reply(free_text):
    with FakeServer(lambda body: free_text) as bad:
        with pytest.raises(StructuredOutputIgnored) as err:
            probe([Endpoint(bad.url, "annotator")])
    msg = str(err.value)
    assert f"{bad.url}/v1/chat/completions" in msg and "ignored response_format" in msg
    assert repr(free_text)[:60] in msg and "1 of 1" in msg
    assert err.value.failures == [(f"{bad.url}/v1/chat/completions", err.value.failures[0][1])]
    (body,) = bad.bodies  # one request, with a schema whose only value the prompt never shows
    token = schema_token(body)
    assert body["response_format"]["type"] == "json_schema" and body["model"] == "annotator"
    assert body["messages"] == [{"role": "user", "content": PROBE_PROMPT}] and token not in json.dumps(body["messages"])
    assert body["temperature"] == 0 and body["max_tokens"] <= 64


def test_only_the_endpoints_that_ignore_the_schema_are_named_and_each_gets_a_fresh_token():
    with FakeServer(honours) as good, FakeServer(lambda body: "a free-text reply") as bad:
        probe([Endpoint(good.url, "a")])  # an enforcing server passes
        with pytest.raises(StructuredOutputIgnored) as err:
            probe([Endpoint(good.url, "a"), Endpoint(bad.url, "b")])
    assert bad.url in str(err.value) and good.url not in str(err.value) and "1 of 2" in str(err.value)
    tokens = [schema_token(b) for b in good.bodies + bad.bodies]
    assert len(good.bodies) == 2 and len(bad.bodies) == 1 and len(set(tokens)) == 3


@pytest.mark.server
@pytest.mark.slow
def test_vllm_enforces_the_probe_schema(vllm_server):
    probe([Endpoint(vllm_server.url, vllm_server.model, vllm_server.api_key_env)])


@pytest.mark.server
@pytest.mark.slow
def test_vllm_answers_the_removed_guided_json_field_with_free_text(vllm_server):
    """Why the probe exists: the same schema sent as `guided_json` is accepted (HTTP 200) and not enforced."""
    import httpx

    from pipeline.drafting.schema_probe import probe_schema

    token = "gpx-5e1f0c2b9a7d"
    body = {"model": vllm_server.model, "messages": [{"role": "user", "content": PROBE_PROMPT}],
            "guided_json": probe_schema(token), "max_tokens": 32, "temperature": 0}
    r = httpx.post(vllm_server.url + "/v1/chat/completions", json=body, timeout=120,
                   headers=Endpoint(vllm_server.url, vllm_server.model, vllm_server.api_key_env).headers())
    assert r.status_code == 200
    assert token not in r.json()["choices"][0]["message"]["content"]


def test_drafting_stops_naming_the_server_before_any_request_of_the_split(tiny_root, tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.planning.stage import run_plan
    from pipeline.synthetic.tiny_build import plan_config

    out = tmp_path / "out"
    run_plan(plan_config(tiny_root, out, "test"), progress=False)
    with FakeServer(lambda body: "Here you are: a plane.") as bad:
        res = CliRunner().invoke(app, ["draft", str(out), "--split", "test", "--vllm-url", bad.url, "--model",
                                       "annotator", "-q"])
        assert res.exit_code == 2 and res.output.startswith("error:") and bad.url in res.output, res.output
        assert len(bad.bodies) == 1 and "response_format" in bad.bodies[0]  # the probe, nothing of the patches
        assert not list((out / "test/records").glob("*.parquet"))
        res = CliRunner().invoke(app, ["draft", str(out), "--split", "test", "--vllm-url", bad.url, "--model",
                                       "annotator", "--no-schema-probe", "-q"])
        assert res.exit_code == 0, res.output  # on the user's word: every reply still validated, and refused
        assert len(bad.bodies) > 1 and "0 grounded" in res.output
