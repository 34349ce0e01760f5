"""Benchmark: plan the iSAID-scale synthetic set (about 1,400 images, 470,000 instances) on this machine.

Goal (issue 2): under 15 minutes and under 4 GB peak memory on 2 cores. Prints a table of wall time,
patches/s, instances/s and peak RSS (the main process plus its workers, sampled every 0.2 s), then, per split
and overall, the per-patch mix of instance and group phrases beside GeoPixelD's (the tier rule's goal: within
15% of 2.19 and 1.01), with what the rule dropped. `--captions` also drafts every plan with the template drafter
and reports caption lengths beside GeoPixelD's (about 740 characters in train).

    python bench/plan_isaid_scale.py [--data bench/out/data] [--workers 2] [--no-images] [--limit N]
                                     [--preset density|cells] [--captions]
"""

from __future__ import annotations

import argparse
import json
import shutil
import threading
import time
from pathlib import Path

from collections import Counter
from statistics import mean

import psutil
import pyarrow.parquet as pq

from pipeline.contracts.config import PlanConfig
from pipeline.contracts.gcg_schema import records_from_table
from pipeline.contracts.layout import records_dir
from pipeline.contracts.paper import PAPER, per_patch_table
from pipeline.contracts.shards import read_manifest
from pipeline.drafting.stage import run_draft
from pipeline.synthetic.isaid import generate
from pipeline.planning.stage import run_plan

SPLITS = ("train", "val")


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


def source_images(data: Path, split: str) -> list[dict]:
    """The split's image records in its annotation JSON (file order)."""
    return json.loads((data / split / "Annotations" / f"iSAID_{split}.json").read_text())["images"]


def dataset_counts(data: Path, workers: int) -> dict:
    """{split: {images, instances}}: from counts.json, else from the annotation files (the set made by
    `geopixeld demo-data`), else generated here first."""
    counts_file = data / "counts.json"
    if not counts_file.exists():
        if all((data / s / "Annotations" / f"iSAID_{s}.json").exists() for s in SPLITS):
            counts = {}
            for split in SPLITS:
                doc = json.loads((data / split / "Annotations" / f"iSAID_{split}.json").read_text())
                counts[split] = {"images": len(doc["images"]), "instances": len(doc["annotations"])}
        else:
            t = time.perf_counter()
            counts = generate(data, scale="isaid", seed=0, workers=workers)
            print(f"generated the iSAID-scale set in {time.perf_counter() - t:.0f} s: {counts}")
        counts_file.write_text(json.dumps(counts))
    return json.loads(counts_file.read_text())


def skipped_beyond(data: Path, split: str, limit: int | None) -> list[str]:
    """Image names past the first `limit` of a split (planned as `source.skip_images`), for quick runs."""
    if limit is None:
        return []
    names = [Path(im["file_name"]).stem for im in source_images(data, split)]
    return names[limit:]


def planned_instances(data: Path, split: str, limit: int | None, counts: dict) -> int:
    """Source instances of the images planned: all of the split's, or those of its first `limit` images."""
    if limit is None:
        return counts[split]["instances"]
    doc = json.loads((data / split / "Annotations" / f"iSAID_{split}.json").read_text())
    ids = {im["id"] for im in doc["images"][:limit]}
    return sum(a["image_id"] in ids for a in doc["annotations"])


def caption_lengths(out: Path, split: str) -> tuple[list[int], int]:
    """Drafts a planned split with the template drafter; (lengths of its grounded descriptions, failed records).

    Records left by an earlier run are removed first: the drafting stage resumes template records by plan
    checksum alone, so they may be another template version's."""
    folder = records_dir(out, split)
    shutil.rmtree(folder, ignore_errors=True)
    run_draft(out, split, progress=False)
    lengths, failed = [], 0
    for name in sorted(read_manifest(folder)["shards"]):
        for r in records_from_table(pq.read_table(folder / name)):
            if r.status == "ok":
                lengths.append(len(r.description))
            else:
                failed += 1
    return lengths, failed


def rule_cost(stats: Counter) -> str:
    """What the tier rule left undescribed, in one line."""
    return (f"objects dropped by the tier rule: {stats['dropped_objects']} of {stats['objects']} "
            f"({stats['dropped_objects'] / max(stats['objects'], 1):.1%}); kept patches without a grounded phrase: "
            f"{stats['kept without a phrase']} of {stats['kept']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("bench/out/data"))
    ap.add_argument("--out", type=Path, default=Path("bench/out/plans"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-images", action="store_true", help="Do not write patch and set-of-marks PNGs.")
    ap.add_argument("--limit", type=int, default=None, help="Plan only the first N images of each split (quick runs).")
    ap.add_argument("--preset", choices=("density", "cells"), default="density", help="The tier rule (tiers.preset).")
    ap.add_argument("--captions", action="store_true",
                    help="Also draft every plan with the template drafter and report caption lengths.")
    args = ap.parse_args()

    counts = dataset_counts(args.data, args.workers)
    rows = []
    total = {"seconds": 0.0, "patches": 0, "kept": 0, "objects": 0, "images": 0}
    with PeakRSS() as mem:
        for split in SPLITS:
            cfg = PlanConfig.model_validate({
                "source": {"root": str(args.data), "split": split,
                           "skip_images": ["P1527", "P1530", *skipped_beyond(args.data, split, args.limit)]},
                "output": {"out": str(args.out), "write_patches": not args.no_images, "write_som": not args.no_images,
                           "shard_images": 8},
                "tiers": {"preset": args.preset},
                "workers": args.workers,
            })
            s = run_plan(cfg, progress=True, overwrite=True)
            rows.append((split, s))
            total["seconds"] += s.seconds
            for k in ("patches", "kept", "objects", "images"):
                total[k] += s.stats[k]
    planned = {split: planned_instances(args.data, split, args.limit, counts) for split in SPLITS}
    instances = sum(planned.values())
    print()
    print("| split | images | patches tiled | patches kept | objects in plans | seconds | patches/s | source instances/s |")
    print("|---|---|---|---|---|---|---|---|")
    for split, s in rows:
        print(f"| {split} | {s.stats['images']} | {s.stats['patches']} | {s.stats['kept']} | {s.stats['objects']} | "
              f"{s.seconds:.0f} | {s.stats['patches'] / s.seconds:.1f} | {planned[split] / s.seconds:.0f} |")
    print(f"| all | {total['images']} | {total['patches']} | {total['kept']} | {total['objects']} | {total['seconds']:.0f} | "
          f"{total['patches'] / total['seconds']:.1f} | {instances / total['seconds']:.0f} |")
    print(f"\nsource instances: {instances}; workers: {args.workers}; images written: {not args.no_images}")
    print(f"peak RSS (main + workers): {mem.peak / 2**30:.2f} GiB; goal: < 15 min and < 4 GiB "
          f"-> {'met' if total['seconds'] < 900 and mem.peak < 4 * 2**30 else 'NOT met'}")

    overall = Counter()
    for split, s in rows:
        overall.update(s.stats)
    print(f"\ntier rule: tiers.preset {args.preset}")
    for name, stats in [*((split, s.stats) for split, s in rows), ("all", overall)]:
        print(f"\n{name}: {stats['kept']} patches, {stats['instances']} instance and {stats['groups']} group phrases\n")
        print(per_patch_table(stats))
        print(f"\n{rule_cost(stats)}")

    if args.captions:
        print("\n| split | captions | mean chars | median | max | failed | seconds | GeoPixelD mean |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        every = []
        for split, _ in rows:
            t = time.perf_counter()
            lengths, failed = caption_lengths(args.out, split)
            every += lengths
            paper = PAPER["train" if split == "train" else "test"]["caption_chars"]
            print(f"| {split} | {len(lengths)} | {mean(lengths):.0f} | {sorted(lengths)[len(lengths) // 2]} | "
                  f"{max(lengths)} | {failed} | {time.perf_counter() - t:.0f} | {paper} |")
        print(f"| all | {len(every)} | {mean(every):.0f} | {sorted(every)[len(every) // 2]} | {max(every)} | | | |")


if __name__ == "__main__":
    main()
