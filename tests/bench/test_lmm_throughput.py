"""The drafting benchmark's pure part: the `vllm bench serve` dataset built from the requests a drafting run sent,
and vLLM's own dataset reader (with the benchmark's per-entry fields) reading it back as those requests."""

from __future__ import annotations

import json
import subprocess

import pytest

from bench.lmm_throughput import VLLM_BENCH_PATCH, dataset_lines, underfull_seconds
from pipeline.synthetic.vllm_server import vllm_bin

IMAGE = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="


def _fmt(name: str) -> dict:
    return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": {"type": "object"}}}


def _sent() -> list[dict]:
    """Two requests as Drafting.on_sent reports them, completed in the other order than they were issued."""
    merge = {"tier": "merge", "messages": [{"role": "user", "content": [{"type": "text", "text": "Merge these."}]}],
             "response_format": _fmt("merge_reply"), "max_tokens": 224, "temperature": 0.2, "seed": 3,
             "usage": {"prompt_tokens": 40, "completion_tokens": 30}, "seconds": 0.5, "issued_at": 2.0}
    instance = {"tier": "instance", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": IMAGE}}, {"type": "text", "text": "Describe mark 1."}]}],
        "response_format": _fmt("instance_reply"), "max_tokens": 96, "temperature": 0.2, "seed": 0,
        "usage": {"prompt_tokens": 60, "completion_tokens": 12}, "seconds": 0.3, "issued_at": 1.0}
    return [merge, instance]


def test_dataset_replays_each_request_in_the_order_it_was_sent():
    lines = dataset_lines(_sent())
    assert [line["output_tokens"] for line in lines] == [96, 224]  # issue order, max tokens as sent
    first = lines[0]
    assert first["content"][0] == {"type": "image_url", "image_url": {"url": IMAGE}}  # the image first, as sent
    assert first["content"][1]["text"] == "Describe mark 1."
    assert first["request_overrides"] == {"response_format": _fmt("instance_reply"), "temperature": 0.2, "seed": 0}
    assert lines[1]["content"] == [{"type": "text", "text": "Merge these."}]
    assert all(json.loads(json.dumps(line)) == line for line in lines)  # one JSONL line each


def test_time_short_of_requests_in_flight():
    spans = [(0.0, 10.0), (0.0, 4.0), (2.0, 6.0)]  # 2 in flight, 3 from 2 s to 4 s, 2 until 6 s, then 1
    assert underfull_seconds(spans, 2) == 4.0
    assert underfull_seconds(spans, 3) == 8.0
    assert underfull_seconds([(0.0, 1.0), (3.0, 5.0)], 1) == 2.0  # the gap with nothing in flight counts


@pytest.mark.slow
def test_vllm_bench_reads_the_dataset_back_as_the_requests(tmp_path):
    python = vllm_bin("python")
    if not python.exists():
        pytest.skip(f"vLLM is missing ({python}): run `make vllm-env`")
    path = tmp_path / "dataset.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in dataset_lines(_sent())))
    read = VLLM_BENCH_PATCH + (
        "import json, sys\n"
        f"ds = D.CustomImageDataset(dataset_path={str(path)!r}, disable_shuffle=True)\n"
        "reqs = ds.sample(tokenizer=None, num_requests=2, no_oversample=True, output_len=1)\n"
        "print(json.dumps([[r.prompt, r.expected_output_len, r.request_overrides] for r in reqs]))\n")
    proc = subprocess.run([str(python), "-c", read], capture_output=True, text=True, timeout=300,
                          env={"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    want = sorted(_sent(), key=lambda r: r["issued_at"])
    assert [g[0] for g in got] == [w["messages"][0]["content"] for w in want]  # what vllm bench sends as content
    assert [g[1] for g in got] == [w["max_tokens"] for w in want]
    assert [g[2]["response_format"] for g in got] == [w["response_format"] for w in want]
    assert [g[2]["seed"] for g in got] == [w["seed"] for w in want]
