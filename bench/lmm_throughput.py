"""Benchmark: LMM drafting throughput against `vllm bench serve` on the same server, requests and concurrency.

Goal (issue 3): the drafting pipeline reaches at least 0.9 of the requests/s that vLLM's own load generator
reaches against the same server with the same prompts: the client must never be the bottleneck. Measured for
both instance modes (per-object, per-patch), with and without the server's prefix cache.

For each server (prefix cache on, then off; a real `vllm serve` of the tiny Qwen2-VL the tests use, started
with their flags by pipeline/synthetic/vllm_server.py), after one warm-up drafting run, every round of each instance
mode runs three variants one after the other (pipeline, vllm bench, client; the next round in the reverse
order, so that drift from other work on a shared machine cancels), with the server's prefix, multimodal and
encoder caches emptied before each:

  pipeline   `geopixeld draft` of the planned demo split (run_draft's shard loop, a fresh reply cache):
             validation, grounding, merges that wait for their tier texts, Parquet records.
  vllm-bench `vllm bench serve --backend openai-chat --dataset-name custom_image` replaying the very
             requests the pipeline run sent, in the order it sent them: same messages (the same PNG
             as a base64 data URL first, then the same text), same response_format JSON schema, max tokens,
             temperature and seed, so the server generates the same tokens for both (checked: the table
             shows both sides' prompt and completion token totals). vLLM's custom_image dataset has no
             per-entry output length or body fields, so the launcher below sets them from each JSONL entry
             (`output_tokens`, `request_overrides`: fields vLLM's own SampleRequest carries and its load
             generator sends), and otherwise runs vLLM's CLI unchanged. It streams; our client does not.
  client     our LMMClient alone replaying the same requests (no pipeline around it): what the client costs.

Same concurrency everywhere: --concurrency requests in flight (the pipeline's own per-server sizing,
LMMSettings.in_flight_per_endpoint; LMMClient's bound;
vllm bench --max-concurrency), request rate unbounded. The ratio is requests/s of the pipeline (and of the
client) over vllm bench's, per round; tokens/s are completion tokens per second. The client CPU column is the
CPU time of the process sending the requests (the drafting run, our client alone, or vllm bench's load
generator) per request: what the sending side takes from a machine it shares with the server. "s with <
concurrency in flight" (from each request's send and reply times) is where a run loses throughput for want of
requests: at its end, and in the pipeline while merges wait for their patch's tier texts.

Does the pipeline keep the server's batch full? --concurrency (the pipeline's in-flight allowance, as above) and
--max-num-seqs (the server's batch) are set apart, and --concurrency takes a list (8,16,256: each measured in
turn on the same server). For every run the benchmark prints and stores the time-weighted mean requests in
flight and the share of the time, between the first send and the last reply, with at least --max-num-seqs
requests in flight (`batch_full_share`): the time the server could batch all it can. For a drafting run the
seconds with fewer than that are split by where they fall: between shards (the pipeline drafts one plan shard
after the other, and nothing is in flight from one shard's last reply to the next one's first send), in each
shard's tail (after its last holistic, instance or group request was sent: only merges, which wait for their
patch's tier texts, and retries are left), and the rest.

    .venv/bin/python bench/lmm_throughput.py [--concurrency 8] [--max-num-seqs 8] [--rounds 2]
    # the in-flight measurement alone (a few minutes): pipeline runs only, prefix cache on, a short warm-up
    .venv/bin/python bench/lmm_throughput.py --scale small --variants pipeline --prefix on --modes per-object \
        --max-num-seqs 8 --concurrency 8,16,256 --rounds 1 --warmup 4

Needs `make vllm-env`. Data: the val split of the demo set --scale names (`tiny`: 14 patches, the default;
`small`: 93 patches in 2 plan shards), planned with the default config under bench/out/lmm/<scale>/ (the server
logs, vllm bench's result files and results.json land there too; results-pipeline.json and the like when
--variants leaves some out); the tiny model is built once into bench/out/lmm/tiny-qwen2vl/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pipeline.contracts.layout import records_dir, reply_cache_file  # noqa: E402
from pipeline.driver import run_stage  # noqa: E402
from pipeline.drafting.stage import open_draft  # noqa: E402
from pipeline.drafting.lmm_client import Endpoint, LMMClient  # noqa: E402
from pipeline.drafting.lmm_drafter import LMMSettings  # noqa: E402
from pipeline.synthetic.vllm_server import build_tiny_model, tiny_server, vllm_bin  # noqa: E402

MODEL_NAME = "tiny"
VARIANTS = ("pipeline", "vllm-bench", "client")
TEXT_TIERS = {"holistic", "instance", "group"}  # the requests a patch's merge waits for

# Runs `vllm bench serve` (vLLM's CLI, in vLLM's environment) with one addition: custom_image entries may carry
# `output_tokens` (the request's max tokens, as vLLM's text `custom` dataset allows) and `request_overrides`
# (body fields sent with that request only; vLLM's SampleRequest has the field and its load generator merges it
# into the request, as for its BFCL dataset).
VLLM_BENCH_PATCH = r"""
from vllm.benchmarks.datasets import datasets as D

_sample = D.CustomImageDataset.sample


def sample(self, *args, **kwargs):
    requests = _sample(self, *args, **kwargs)
    prefix = kwargs.get("request_id_prefix", "")
    for r in requests:
        item = self.data[int(r.request_id[len(prefix):])]
        r.expected_output_len = int(item["output_tokens"])
        r.request_overrides = item.get("request_overrides")
    return requests


D.CustomImageDataset.sample = sample
"""
VLLM_BENCH_LAUNCHER = VLLM_BENCH_PATCH + r"""
import sys
import time

import vllm.benchmarks.serve as S

_benchmark = S.benchmark


async def benchmark(*args, **kwargs):  # the load generator's own CPU time, for the client-cost column
    cpu = time.process_time()
    result = await _benchmark(*args, **kwargs)
    print(f"LOAD_GENERATOR_CPU_SECONDS {time.process_time() - cpu:.3f}")
    return result


S.benchmark = benchmark
from vllm.entrypoints.cli.main import main

sys.argv = ["vllm", "bench", "serve", *sys.argv[1:]]
main()
"""


@dataclass
class Run:
    variant: str
    requests: int
    seconds: float
    prompt_tokens: int
    completion_tokens: int
    failed: int = 0
    cpu_seconds: float = 0.0  # CPU time of the side sending the requests (its process; the server excluded)
    extra: dict = field(default_factory=dict)

    @property
    def req_s(self) -> float:
        return self.requests / self.seconds

    @property
    def tok_s(self) -> float:
        return self.completion_tokens / self.seconds


def dataset_lines(sent: list[dict]) -> list[dict]:
    """vllm bench custom_image JSONL entries for the requests a drafting run sent, in the order it sent them.

    Each entry holds the request's exact message content (image data URL first, then the text), its max
    tokens, and the body fields that shape generation (response_format, temperature, seed).
    """
    lines = []
    for r in sorted(sent, key=lambda r: r["issued_at"]):
        (message,) = r["messages"]
        lines.append({"content": message["content"], "output_tokens": r["max_tokens"],
                      "request_overrides": {"response_format": r["response_format"], "temperature": r["temperature"],
                                            "seed": r["seed"]}})
    return lines


def underfull_seconds(spans: list[tuple[float, float]], slots: int, start: float | None = None,
                      end: float | None = None) -> float:
    """Seconds, between the first send and the last reply (or within [start, end]), with fewer than `slots`
    requests in flight.

    `spans` are (sent, answered) times. A load generator without dependencies only runs short of requests
    at the very end; a pipeline whose later requests wait for earlier replies (the merge) can also run short
    while it waits, and at the end of a run its last merges run with few requests beside them.
    """
    events = sorted([(t0, 1) for t0, _ in spans] + [(t1, -1) for _, t1 in spans])
    lo = events[0][0] if start is None else start
    hi = events[-1][0] if end is None else end
    # a window reaching past the spans: nothing in flight there
    short = max(0.0, min(hi, events[0][0]) - lo) + max(0.0, hi - max(lo, events[-1][0]))
    level, last = 0, events[0][0]
    for t, step in events:
        if level < slots:
            short += max(0.0, min(t, hi) - max(last, lo))
        level, last = level + step, t
    return short


def batch_full_share(spans: list[tuple[float, float]], slots: int) -> float:
    """Share of the time between the first send and the last reply with at least `slots` requests in flight
    (`slots`: the server's --max-num-seqs, the most it batches)."""
    t0, t1 = min(a for a, _ in spans), max(b for _, b in spans)
    return 1 - underfull_seconds(spans, slots) / (t1 - t0) if t1 > t0 else 0.0


def mean_in_flight(spans: list[tuple[float, float]]) -> float:
    """Requests in flight on average (time-weighted) between the first send and the last reply."""
    events = sorted([(t0, 1) for t0, _ in spans] + [(t1, -1) for _, t1 in spans])
    area, level, last = 0.0, 0, events[0][0]
    for t, step in events:
        area += level * (t - last)
        level, last = level + step, t
    return area / (events[-1][0] - events[0][0]) if events[-1][0] > events[0][0] else 0.0


def in_flight_stats(spans: list[tuple[float, float]], allowed: int, batch: int) -> dict:
    """A run's requests in flight: seconds short of its allowance, the mean, and how much of the time the
    server's batch (`batch` requests) could be full."""
    return {"underfull_s": underfull_seconds(spans, allowed), "in_flight": mean_in_flight(spans),
            "batch_full_share": batch_full_share(spans, batch), "short_of_batch_s": underfull_seconds(spans, batch)}


def short_of_batch_where(sent: list[tuple[str, float, float]], shards: list[tuple[float, float]], batch: int) -> dict:
    """Where a drafting run had fewer than `batch` requests in flight, in seconds: between shards (one shard's last
    reply to the next one's first send), in the shards' tails (from a shard's last holistic, instance or group send to
    its last reply: only merges and retries left), and the rest; also, per shard, how long its tail was and how much
    of it short. `sent`: (tier, sent, answered) of every request; `shards`: each plan shard's (start, end) of drafting."""
    spans = [(t0, t1) for _, t0, t1 in sent]
    between = 0.0
    tails, tail_short = [], []
    previous_reply = None
    for start, end in sorted(shards):
        mine = [(tier, t0, t1) for tier, t0, t1 in sent if start <= t0 <= end]
        if not mine:
            continue
        first, last = min(t0 for _, t0, _ in mine), max(t1 for _, _, t1 in mine)
        texts = [t0 for tier, t0, _ in mine if tier in TEXT_TIERS]
        tail_from = max(texts) if texts else first
        tails.append(last - tail_from)
        tail_short.append(underfull_seconds(spans, batch, tail_from, last))
        if previous_reply is not None:
            between += underfull_seconds(spans, batch, previous_reply, first)
        previous_reply = last
    total = underfull_seconds(spans, batch)
    return {"short_between_shards_s": between, "short_shard_tails_s": sum(tail_short),
            "short_rest_s": total - between - sum(tail_short), "shard_tail_s": tails, "shard_tail_short_s": tail_short}


def check_in_flight_math() -> None:
    """The in-flight functions on a case worked out by hand (they are the benchmark's evidence)."""
    spans = [(0.0, 4.0), (0.0, 2.0), (1.0, 3.0)]  # in flight: 2 on [0,1), 3 on [1,2), 2 on [2,3), 1 on [3,4)
    assert underfull_seconds(spans, 3) == 3.0
    assert underfull_seconds(spans, 3, 1.5, 3.5) == 1.5
    assert underfull_seconds(spans, 1, 4.0, 5.0) == 1.0  # past the last reply: nothing in flight
    assert mean_in_flight(spans) == 2.0
    assert batch_full_share(spans, 2) == 0.75 and batch_full_share(spans, 3) == 0.25
    # shard 1: 1 in flight on [0,1) (rest), its last text sent at 1, 1 in flight on [1.5,3) (tail); nothing on [3,4)
    # (between shards); shard 2: its texts sent at 4, 1 in flight on [5,6) (tail)
    where = short_of_batch_where([("holistic", 0.0, 2.0), ("instance", 1.0, 1.5), ("merge", 2.0, 3.0),
                                  ("holistic", 4.0, 5.0), ("group", 4.0, 6.0)], [(0.0, 3.5), (3.9, 6.5)], 2)
    assert where == {"short_between_shards_s": 1.0, "short_shard_tails_s": 2.5, "short_rest_s": 1.0,
                     "shard_tail_s": [2.0, 2.0], "shard_tail_short_s": [1.5, 1.0]}, where


def prepare(work: Path, scale: str) -> tuple[Path, int]:
    """The `scale` demo set's val split, planned once (default config); returns the output folder and patch count."""
    from pipeline.contracts.layout import plans_dir
    from pipeline.contracts.shards import read_manifest
    from pipeline.synthetic.tiny_build import tiny_build

    out = work / "out"
    manifest = read_manifest(plans_dir(out, "val"))
    if not manifest or not manifest.get("complete"):
        tiny_build(work, scale=scale, splits=("val",), draft=False, workers=0)
        manifest = read_manifest(plans_dir(out, "val"))
    return out, manifest["rows"]


def fresh(out: Path) -> None:
    """No records and an empty reply cache: every request of the next drafting run is sent."""
    shutil.rmtree(records_dir(out, "val"), ignore_errors=True)
    cache = reply_cache_file(out, "val")
    for tail in ("", "-wal", "-shm"):
        cache.with_name(cache.name + tail).unlink(missing_ok=True)


def settings_for(url: str, mode: str, concurrency: int) -> LMMSettings:
    # the pipeline's own sizing: no cap, `concurrency` a server (what a user sets to the server's --max-num-seqs)
    return LMMSettings([Endpoint(url, MODEL_NAME)], instance_mode=mode, in_flight_per_endpoint=concurrency, timeout=600)


def pipeline_run(out: Path, url: str, mode: str, concurrency: int, batch: int) -> tuple[Run, list[dict]]:
    """One `geopixeld draft` run (run_draft's shard loop) from a fresh reply cache; also returns what it sent.
    `batch`: the server's --max-num-seqs, for the in-flight statistics."""
    fresh(out)
    sent: list[dict] = []
    shards: list[tuple[float, float]] = []
    with open_draft(out, "val", settings_for(url, mode, concurrency)) as job:
        job.drafting.on_sent = sent.append
        draft_shard = job.draft_shard

        def timed(name):  # each plan shard's drafting time, to tell the gaps between shards apart
            t = time.perf_counter()
            got = draft_shard(name)
            shards.append((t, time.perf_counter()))
            return got

        job.draft_shard = timed
        t0, cpu = time.perf_counter(), time.process_time()
        summary = run_stage(job)  # the drafting stage as `geopixeld draft` runs it
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu
    s = summary.stats
    spans = [(r["issued_at"], r["issued_at"] + r["seconds"]) for r in sent]
    where = short_of_batch_where([(r["tier"], r["issued_at"], r["issued_at"] + r["seconds"]) for r in sent], shards, batch)
    return Run("pipeline", s["requests_sent"], seconds, s["prompt_tokens"], s["completion_tokens"], s["failed"], cpu,
               {"records": s["records"], "ok": s["ok"], "shards": len(shards),
                "replies": len(sent),  # requests_sent counts HTTP attempts: more than replies after a retried send
                "merge_requests": sum(r["tier"] == "merge" for r in sent),
                "span_s": max(b for _, b in spans) - min(a for a, _ in spans),
                **in_flight_stats(spans, concurrency, batch), **where}), sent


def warm_up(out: Path, url: str, mode: str, concurrency: int, patches: int) -> Run:
    """The server warmed up on the split's first `patches` patches (every tier's requests, so each reply schema is
    compiled once) rather than on a whole drafting run; no records are written."""
    from pipeline.drafting.lmm_drafter import draft_plans
    from pipeline.drafting.stage import read_plan_shard

    fresh(out)
    with open_draft(out, "val", settings_for(url, mode, concurrency)) as job:
        plans = [p for name in job.shard_names for p in read_plan_shard(out, "val", job.plans, name)][:patches]
        t0, cpu = time.perf_counter(), time.process_time()
        job.drafting.loop.run_until_complete(draft_plans(plans, Path(out) / "val", job.drafting))
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu
        sent = sum(sum(c.state.sent.values()) for c in job.drafting.distinct_clients())
        tokens = job.drafting.tokens
    return Run("warm-up", sent, seconds, tokens["prompt"], tokens["completion"], 0, cpu)


def vllm_bench_run(url: str, model_dir: Path, sent: list[dict], concurrency: int, batch: int, work: Path, tag: str) -> Run:
    """`vllm bench serve` replaying `sent` (see the module docstring)."""
    dataset = work / f"dataset-{tag}.jsonl"
    dataset.write_text("".join(json.dumps(line) + "\n" for line in dataset_lines(sent)))
    result = work / f"vllm-bench-{tag}.json"
    result.unlink(missing_ok=True)
    cmd = [str(vllm_bin("python")), "-c", VLLM_BENCH_LAUNCHER, "--backend", "openai-chat", "--base-url", url,
           "--endpoint", "/v1/chat/completions", "--model", str(model_dir), "--served-model-name", MODEL_NAME,
           "--dataset-name", "custom_image", "--dataset-path", str(dataset), "--num-prompts", str(len(sent)),
           "--disable-shuffle", "--no-oversample", "--max-concurrency", str(concurrency), "--request-rate", "inf",
           "--disable-tqdm", "--save-result", "--save-detailed", "--result-dir", str(work), "--result-filename", result.name]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"}
    env.pop("OPENAI_API_KEY", None)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
    (work / f"vllm-bench-{tag}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0 or not result.exists():
        raise RuntimeError(f"vllm bench serve failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    r = json.loads(result.read_text())
    cpu = float(proc.stdout.split("LOAD_GENERATOR_CPU_SECONDS ", 1)[1].split()[0])
    spans = [(t0, t0 + lat) for t0, lat in zip(r["start_times"], r["latencies"])]
    return Run("vllm-bench", r["completed"], r["duration"], r["total_input_tokens"], r["total_output_tokens"],
               r["failed"], cpu, in_flight_stats(spans, concurrency, batch))


def client_run(url: str, sent: list[dict], concurrency: int, batch: int) -> Run:
    """Our LMMClient alone replaying `sent` in the order it was sent, `concurrency` in flight."""
    reqs = sorted(sent, key=lambda r: r["issued_at"])

    spans: list[tuple[float, float]] = []

    async def go():
        async with LMMClient([Endpoint(url, MODEL_NAME)], max_in_flight=concurrency, timeout=600) as client:
            admit = asyncio.Semaphore(concurrency)  # the client's own bound, seen from outside to time each send

            async def one(r):
                async with admit:
                    t = time.perf_counter()
                    reply = await client.chat(r["messages"], r["response_format"], max_tokens=r["max_tokens"],
                                              temperature=r["temperature"], seed=r["seed"])
                    spans.append((t, time.perf_counter()))
                    return reply

            t0, cpu = time.perf_counter(), time.process_time()
            replies = await asyncio.gather(*[one(r) for r in reqs])
            return replies, time.perf_counter() - t0, time.process_time() - cpu

    replies, seconds, cpu = asyncio.run(go())
    return Run("client", len(replies), seconds, sum(r.usage.get("prompt_tokens", 0) for r in replies),
               sum(r.usage.get("completion_tokens", 0) for r in replies), 0, cpu,
               in_flight_stats(spans, concurrency, batch))


def prefix_hits(url: str) -> tuple[float, float]:
    """(prefix-cache queries, hits) in tokens, from the server's Prometheus counters."""
    import httpx

    got = {"queries": 0.0, "hits": 0.0}
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        for k in got:
            if line.startswith(f"vllm:prefix_cache_{k}_total"):
                got[k] += float(line.rsplit(" ", 1)[1])
    return got["queries"], got["hits"]


def measured(server, fn, *args) -> Run:
    """Run one variant from cold server caches, recording its prefix-cache hit rate."""
    server.reset_caches()
    q0, h0 = prefix_hits(server.url)
    got = fn(*args)
    run = got[0] if isinstance(got, tuple) else got
    q1, h1 = prefix_hits(server.url)
    run.extra["prefix_hit"] = (h1 - h0) / (q1 - q0) if q1 > q0 else 0.0
    run.extra["load_avg"] = os.getloadavg()[0]  # other work on the machine during the run (1-minute average)
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=REPO / "bench/out/lmm",
                    help="the tiny model here; each scale's data, plans, logs and results under <work>/<scale>/")
    ap.add_argument("--scale", choices=("tiny", "small"), default="tiny",
                    help="the demo set whose val split is drafted (tiny: 14 patches; small: 93)")
    ap.add_argument("--concurrency", default="8",
                    help="requests in flight, the same for every variant: the pipeline's allowance "
                         "(in_flight_per_endpoint), our client's bound, vllm bench --max-concurrency; a comma list "
                         "(8,16,256) measures each in turn on the same server")
    ap.add_argument("--max-num-seqs", type=int, default=8, help="the server's batch size (vllm serve --max-num-seqs)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--modes", default="per-object,per-patch")
    ap.add_argument("--prefix", default="on,off", help="prefix cache settings to measure (one server start each)")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help="the variants to run (pipeline always: the replays send its requests); "
                         "`pipeline` alone measures requests in flight without the replays")
    ap.add_argument("--warmup", default="split",
                    help="`split`: warm the server up with a whole drafting run of the split; a number N: with the "
                         "split's first N patches only (0: no warm-up)")
    ap.add_argument("--report", type=Path, help="only print the tables of a results.json written earlier")
    args = ap.parse_args()
    check_in_flight_math()
    if args.report:
        rows = json.loads(args.report.read_text())
        print(table(rows, rows[0].get("patches") or round(rows[0]["prompt_tokens"] / rows[0]["prompt_tokens_per_patch"])))
        if any("batch_full_share" in r for r in rows):
            print()
            print(in_flight_table(rows))
        return
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    variants = [v for v in VARIANTS if v in args.variants.split(",")]
    if set(args.variants.split(",")) - set(VARIANTS) or "pipeline" not in variants:
        sys.exit(f"--variants: a comma list of {', '.join(VARIANTS)}, with pipeline (the replays send its requests)")
    if args.warmup != "split" and not args.warmup.isdigit():
        sys.exit("--warmup: `split` or a number of patches")
    if not vllm_bin().exists():
        sys.exit(f"vLLM is missing ({vllm_bin()}): run `make vllm-env`")
    work = args.work / args.scale
    work.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    out, patches = prepare(work, args.scale)
    model = build_tiny_model(args.work / "tiny-qwen2vl")
    batch = args.max_num_seqs
    rows = []
    results = work / ("results.json" if variants == list(VARIANTS) else f"results-{'+'.join(variants)}.json")
    for prefix in args.prefix.split(","):
        log = work / f"vllm-prefix-{prefix}.log"
        log.unlink(missing_ok=True)
        server = tiny_server(model, log, name=MODEL_NAME, prefix_caching=prefix == "on", max_num_seqs=batch,
                             dev_mode=True)
        t = time.perf_counter()
        with server:
            print(f"server up (prefix cache {prefix}) in {time.perf_counter() - t:.0f} s", flush=True)
            first_mode = args.modes.split(",")[0]
            if args.warmup == "split":
                warm, _ = measured(server, pipeline_run, out, server.url, first_mode, concurrencies[0], batch)
            elif int(args.warmup):
                warm = measured(server, warm_up, out, server.url, first_mode, concurrencies[0], int(args.warmup))
            if args.warmup == "split" or int(args.warmup):
                print(f"  warm-up: {warm.requests} requests in {warm.seconds:.1f} s", flush=True)
            for concurrency in concurrencies:
                for mode in args.modes.split(","):
                    sent: list[dict] = []
                    for rnd in range(args.rounds):
                        tag = f"{prefix}-{mode}-{rnd}" if len(concurrencies) == 1 else f"{prefix}-{mode}-c{concurrency}-{rnd}"
                        # pipeline, vllm bench, client; then the other way round (drift on a shared machine cancels).
                        # A drafting run sends the same requests every time (same seeds): the replays use the latest.
                        runs = {}
                        for variant in (VARIANTS if rnd % 2 == 0 else VARIANTS[::-1]):
                            if variant not in variants:
                                continue
                            if variant == "pipeline":
                                runs[variant], sent = measured(server, pipeline_run, out, server.url, mode, concurrency,
                                                               batch)
                            elif variant == "vllm-bench":
                                runs[variant] = measured(server, vllm_bench_run, server.url, model, sent, concurrency,
                                                         batch, work, tag)
                            else:
                                runs[variant] = measured(server, client_run, server.url, sent, concurrency, batch)
                        for run in runs.values():
                            rows.append({"scale": args.scale, "prefix": prefix, "mode": mode, "concurrency": concurrency,
                                         "max_num_seqs": batch, "patches": patches, "round": rnd,
                                         "variant": run.variant, "requests": run.requests, "seconds": run.seconds,
                                         "req_s": run.req_s, "tok_s": run.tok_s, "prompt_tokens": run.prompt_tokens,
                                         "completion_tokens": run.completion_tokens, "failed": run.failed,
                                         "cpu_ms_per_request": 1000 * run.cpu_seconds / run.requests,
                                         "prompt_tokens_per_patch": run.prompt_tokens / patches, **run.extra})
                            x = run.extra
                            where = (f" (between shards {x['short_between_shards_s']:.1f}, shard tails "
                                     f"{x['short_shard_tails_s']:.1f} of tails "
                                     + "+".join(f"{t:.1f}" for t in x["shard_tail_s"]) + f" s, rest {x['short_rest_s']:.1f})"
                                     if "short_shard_tails_s" in x else "")
                            print(f"  {tag} {run.variant:10s} {run.requests} req {run.seconds:6.1f} s {run.req_s:6.2f} req/s "
                                  f"{run.tok_s:7.1f} tok/s  prompt {run.prompt_tokens} completion {run.completion_tokens} "
                                  f"client CPU {1000 * run.cpu_seconds / run.requests:.1f} ms/req "
                                  f"short of requests {x['underfull_s']:.1f} s "
                                  f"mean in flight {x['in_flight']:.1f}, >= {batch} (the server batch) "
                                  f"{x['batch_full_share']:.0%} of the time, < {batch} for {x['short_of_batch_s']:.1f} s"
                                  f"{where} prefix hits {x['prefix_hit']:.0%} load {x['load_avg']:.1f}", flush=True)
                        results.write_text(json.dumps(rows, indent=1))  # as it goes: a long run keeps what it measured
    results.write_text(json.dumps(rows, indent=1))
    print()
    print(table(rows, patches))
    print()
    print(in_flight_table(rows))
    print(f"\n{patches} patches ({args.scale} val); concurrency {args.concurrency}; server --max-num-seqs {batch}; "
          f"{args.rounds} round(s); total bench time {time.perf_counter() - t_all:.0f} s; results in {results}")


def table(rows: list[dict], patches: int) -> str:
    """Markdown table: per prefix setting, concurrency and mode, the mean over rounds of each variant, and the ratios
    (those of a run without vllm bench: none)."""
    lines = ["| prefix cache | concurrency | instance mode | variant | requests | req/s | completion tok/s | prompt tokens | "
             "completion tokens | prompt tokens / patch | prefix hits | client CPU ms / request | "
             "s with < concurrency in flight | req/s ratio to vllm bench: mean (per round) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    keys = list(dict.fromkeys((r["prefix"], r.get("concurrency", ""), r["mode"]) for r in rows))
    for prefix, concurrency, mode in keys:
        group = [r for r in rows if (r["prefix"], r.get("concurrency", ""), r["mode"]) == (prefix, concurrency, mode)]
        bench = {r["round"]: r["req_s"] for r in group if r["variant"] == "vllm-bench"}
        for variant in VARIANTS:
            rs = [r for r in group if r["variant"] == variant]
            if not rs:
                continue
            mean = lambda k: statistics.mean(r[k] for r in rs)  # noqa: E731
            ratios = [r["req_s"] / bench[r["round"]] for r in rs if r["round"] in bench]
            ratio = ("1" if variant == "vllm-bench" else "-" if not ratios else
                     f"{statistics.mean(ratios):.2f} (" + ", ".join(f"{x:.2f}" for x in ratios) + ")")
            lines.append(f"| {prefix} | {concurrency} | {mode} | {variant} | {mean('requests'):.0f} | {mean('req_s'):.2f} | "
                         f"{mean('tok_s'):.0f} | {mean('prompt_tokens'):.0f} | {mean('completion_tokens'):.0f} | "
                         f"{mean('prompt_tokens') / patches:.0f} | {mean('prefix_hit'):.0%} | "
                         f"{mean('cpu_ms_per_request'):.1f} | {mean('underfull_s'):.1f} of {mean('seconds'):.1f} | "
                         f"{ratio} |")
    bench = {(r["prefix"], r.get("concurrency"), r["mode"], r["round"]): r["req_s"] for r in rows
             if r["variant"] == "vllm-bench"}
    for variant in ("pipeline", "client"):
        ratios = [r["req_s"] / bench[key] for r in rows if r["variant"] == variant
                  and (key := (r["prefix"], r.get("concurrency"), r["mode"], r["round"])) in bench]
        if ratios:
            lines.append(f"\n{variant} / vllm bench, requests/s over all {len(ratios)} rounds: geometric mean "
                         f"{statistics.geometric_mean(ratios):.2f}, median {statistics.median(ratios):.2f}, "
                         f"range {min(ratios):.2f}-{max(ratios):.2f}")
    loads = [r["load_avg"] for r in rows]
    lines.append(f"\nload average (1 min) during the runs: {min(loads):.1f}-{max(loads):.1f}")
    return "\n".join(lines)


def in_flight_table(rows: list[dict]) -> str:
    """Markdown table, one line per drafting run: requests in flight against its allowance and the server's batch."""
    lines = ["| scale | prefix cache | instance mode | round | allowed in flight | server batch | patches | requests | "
             "seconds | req/s | mean in flight | time with >= batch in flight | s with < batch in flight: all "
             "(between shards, shard tails, rest) | shard tails: s short of batch / s long, each shard | "
             "s with < allowed in flight |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["variant"] != "pipeline" or "batch_full_share" not in r:
            continue
        lines.append(f"| {r['scale']} | {r['prefix']} | {r['mode']} | {r['round']} | {r['concurrency']} | "
                     f"{r['max_num_seqs']} | {r['patches']} | {r['requests']} | {r['seconds']:.1f} | {r['req_s']:.2f} | "
                     f"{r['in_flight']:.1f} | {r['batch_full_share']:.0%} | {r['short_of_batch_s']:.1f} "
                     f"({r['short_between_shards_s']:.1f}, {r['short_shard_tails_s']:.1f}, {r['short_rest_s']:.1f}) | "
                     + ", ".join(f"{a:.1f} / {b:.1f}" for a, b in zip(r.get("shard_tail_short_s", []),
                                                                     r.get("shard_tail_s", []))) +
                     f" | {r['underfull_s']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
