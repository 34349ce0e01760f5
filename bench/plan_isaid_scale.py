"""Benchmark: plan the iSAID-scale synthetic set (about 1,400 images, 470,000 instances) on this machine.

Goal (issue 2): under 15 minutes and under 4 GB peak memory on 2 cores. Prints a table of wall time,
patches/s, instances/s and peak RSS (the main process plus its workers, sampled every 0.2 s), and
the time of a single-process run of a few images as a baseline for the pool's speed-up.

    python bench/plan_isaid_scale.py [--data bench/out/data] [--workers 2] [--no-images]
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import psutil

from pipeline.contracts.config import PlanConfig
from pipeline.synthetic.isaid import generate
from pipeline.planning.stage import run_plan


class PeakRSS:
    """Peak of the summed RSS of this process and all its children."""

    def __init__(self, interval: float = 0.2):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("bench/out/data"))
    ap.add_argument("--out", type=Path, default=Path("bench/out/plans"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-images", action="store_true", help="Do not write patch and set-of-marks PNGs.")
    args = ap.parse_args()

    counts_file = args.data / "counts.json"
    if not counts_file.exists():
        t = time.perf_counter()
        counts = generate(args.data, scale="isaid", seed=0, workers=args.workers)
        counts_file.write_text(json.dumps(counts))
        print(f"generated the iSAID-scale set in {time.perf_counter() - t:.0f} s: {counts}")
    counts = json.loads(counts_file.read_text())

    rows = []
    total = {"seconds": 0.0, "patches": 0, "kept": 0, "objects": 0, "images": 0}
    with PeakRSS() as mem:
        for split in ("train", "val"):
            cfg = PlanConfig.model_validate({
                "source": {"root": str(args.data), "split": split},
                "output": {"out": str(args.out), "write_patches": not args.no_images, "write_som": not args.no_images,
                           "shard_images": 8},
                "workers": args.workers,
            })
            s = run_plan(cfg, progress=True, overwrite=True)
            rows.append((split, s))
            total["seconds"] += s.seconds
            for k in ("patches", "kept", "objects", "images"):
                total[k] += s.stats[k]
    instances = sum(c["instances"] for c in counts.values())
    print()
    print("| split | images | patches tiled | patches kept | objects in plans | seconds | patches/s | source instances/s |")
    print("|---|---|---|---|---|---|---|---|")
    for split, s in rows:
        print(f"| {split} | {s.stats['images']} | {s.stats['patches']} | {s.stats['kept']} | {s.stats['objects']} | "
              f"{s.seconds:.0f} | {s.stats['patches'] / s.seconds:.1f} | {counts[split]['instances'] / s.seconds:.0f} |")
    print(f"| all | {total['images']} | {total['patches']} | {total['kept']} | {total['objects']} | {total['seconds']:.0f} | "
          f"{total['patches'] / total['seconds']:.1f} | {instances / total['seconds']:.0f} |")
    print(f"\nsource instances: {instances}; workers: {args.workers}; images written: {not args.no_images}")
    print(f"peak RSS (main + workers): {mem.peak / 2**30:.2f} GiB; goal: < 15 min and < 4 GiB "
          f"-> {'met' if total['seconds'] < 900 and mem.peak < 4 * 2**30 else 'NOT met'}")


if __name__ == "__main__":
    main()
