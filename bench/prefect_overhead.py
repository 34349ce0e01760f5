"""Benchmark: Prefect's own overhead on the demo build (issue 4: under 15% of wall time).

The same stage functions are run twice per round on the same demo data, each time into a fresh output folder so
that nothing is skipped: once called directly on a process pool (`flows/without_prefect.py`), once as the in-process
`build-geopixeld` flow (`flows/build.py`) on the same pool size. Rounds alternate the order. The temporary Prefect
server starts once, before the first timed run, and its start-up is reported apart (a served deployment pays it
once per server, not per build). Prints a table, the task-run count, and the count an iSAID-scale build would make.

    python bench/prefect_overhead.py [--scale small] [--rounds 3] [--workers 2]
"""

import argparse
import math
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from flows.in_process import prefect_defaults


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", default="small", choices=["tiny", "small"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    a = ap.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="geopixeld-prefect-bench-"))
    state = work / "state"
    prefect_defaults(state)

    from flows.without_prefect import build_without_prefect
    from flows.params import BuildParams
    from pipeline.synthetic.isaid import generate

    data = work / "data"
    if not (data / "val").exists():
        generate(data, scale=a.scale, seed=0, progress=False)

    def params(out: Path) -> BuildParams:
        return BuildParams.model_validate({"source": {"root": str(data), "synthetic": None}, "output": {"out": str(out)},
                                           "workers": a.workers, "progress": False})

    t0 = time.perf_counter()
    from flows.build import build_geopixeld  # noqa: E402 (after prefect_defaults)
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as c:  # starts the temporary server
        c.hello()
    startup = time.perf_counter() - t0

    direct, flow, runs = [], [], 0
    for r in range(a.rounds):
        order = ("direct", "flow") if r % 2 == 0 else ("flow", "direct")
        for kind in order:
            out = work / f"out-{kind}-{r}"
            shutil.rmtree(out, ignore_errors=True)
            t = time.perf_counter()
            if kind == "direct":
                build_without_prefect(params(out))
                direct.append(time.perf_counter() - t)
            else:
                runs = build_geopixeld(params(out))["task_runs"]
                flow.append(time.perf_counter() - t)
            shutil.rmtree(out, ignore_errors=True)

    d, f = statistics.median(direct), statistics.median(flow)
    print(f"\nPrefect overhead on the {a.scale} demo build ({a.workers} workers, {a.rounds} rounds, medians)\n")
    print("| run | wall s (median) | all runs (s) |\n|---|---:|---|")
    print(f"| stages called directly | {d:.2f} | {', '.join(f'{x:.2f}' for x in direct)} |")
    print(f"| build-geopixeld flow, in-process | {f:.2f} | {', '.join(f'{x:.2f}' for x in flow)} |")
    print(f"\noverhead: {100 * (f - d) / f:.1f}% of the flow's wall time (goal: under 15%); ratio flow/direct {f / d:.3f}")
    print(f"task runs per build: {runs}; temporary server start-up (once): {startup:.1f} s")
    shards = math.ceil(933 / 8) + math.ceil(467 / 8)  # iSAID train/val images, 8 images per shard (the default)
    per_split = lambda n: 1 + 2 * math.ceil(math.ceil(n / 8) / 2) + 1  # noqa: E731 ingest, plan+draft batches, validate
    print(f"an iSAID-scale build (1,400 images, {shards} shards, batch_shards 2): "
          f"{per_split(933) + per_split(467) + 1} task runs")


if __name__ == "__main__":
    main()
