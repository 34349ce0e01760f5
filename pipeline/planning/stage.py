"""The planning stage: read the source, plan its images shard by shard, resume where a previous run stopped,
and report the quarantine at the end. `prepare_plan` makes the job; `pipeline.driver.run_stage` runs it."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from tqdm import tqdm

from pipeline.contracts.categories import Vocabulary
from pipeline.contracts.config import PlanConfig
from pipeline.contracts.fileio import atomic_write_bytes, sync_outputs
from pipeline.contracts.layout import plans_dir, quarantine_file, split_dir
from pipeline.contracts.plan_schema import PLAN_SCHEMA_VERSION, plans_to_table
from pipeline.contracts.quarantine import Issue, Quarantine, format_report, issues_from_dicts, issues_to_jsonl
from pipeline.contracts.records import SourceImage
from pipeline.contracts.shards import ShardManifest, write_table
from pipeline.driver import ProcessPool, run_stage
from pipeline.ingest import open_source
from pipeline.planning.planner import plan_image


@dataclass
class ShardResult:
    name: str
    images: list[str]
    rows: int
    sha256: str
    issues: list[Issue]
    stats: Counter


@dataclass
class RunSummary:
    split_dir: Path
    shards_total: int
    shards_skipped: int
    stats: Counter = field(default_factory=Counter)
    issues: list[Issue] = field(default_factory=list)
    seconds: float = 0.0

    def table(self) -> str:
        s = self.stats
        rate = s["kept"] / self.seconds if self.seconds else 0.0
        lines = [
            f"Plans in {self.split_dir / 'plans'}",
            f"  shards        {self.shards_total} ({self.shards_skipped} already finished, skipped)",
            f"  images        {s['images']}",
            f"  patches       {s['patches']} tiled, {s['kept']} kept",
            f"  objects       {s['objects']} ({s['instances']} marked instances, {s['groups']} groups)",
            f"  time          {self.seconds:.1f} s ({rate:.1f} patches/s)",
        ]
        for k in sorted(k for k in s if k.startswith("dropped: ")):
            lines.append(f"  {k:<13} {s[k]} patches".replace("dropped: ", "dropped, "))
        return "\n".join(lines)


def shard_name(k: int) -> str:
    return f"plans-{k:05d}.parquet"


def plan_shard(k: int, images: list[SourceImage], cfg: PlanConfig, vocab: Vocabulary, split_dir: Path) -> ShardResult:
    """Plan every image of one shard and write the shard atomically (runs in a worker process)."""
    plans, issues, stats = [], [], Counter()
    for img in images:
        res = plan_image(img, cfg, vocab, split_dir)
        for p in res.plans:
            p.split = cfg.source.split
        plans.extend(res.plans)
        issues.extend(res.issues)
        stats.update(res.stats)
        stats["images"] += 1
    name = shard_name(k)
    sync_outputs()  # the patch and set-of-marks PNGs are on disk before the shard that names them
    sha = write_table(plans_to_table(plans), split_dir / "plans" / name)
    return ShardResult(name, [im.name for im in images], len(plans), sha, issues, stats)


def plan_batch(batch: list[tuple[int, list[SourceImage]]], cfg: PlanConfig, vocab: Vocabulary,
               split_dir: Path) -> list[ShardResult]:
    """The stage's work: plan a batch of shards (each written atomically); the job records them."""
    return [plan_shard(k, chunk, cfg, vocab, split_dir) for k, chunk in batch]


def input_fingerprint(cfg: PlanConfig, images: list[SourceImage]) -> str:
    h = hashlib.sha256(cfg.fingerprint().encode())
    h.update(str(cfg.output.shard_images).encode())
    for im in images:
        h.update(f"{im.name}:{im.rel_path}:{len(im.objects)}\n".encode())
    return h.hexdigest()[:16]


@dataclass
class PlanJob:
    """One split's planning run, for `pipeline.driver.run_stage` (the CLI, the Prefect flow, the benchmarks)."""

    cfg: PlanConfig
    vocab: Vocabulary
    split_dir: Path
    manifest: ShardManifest
    chunks: list[tuple[int, list[SourceImage]]]
    todo: list[tuple[int, list[SourceImage]]]
    source_issues: list[Issue]
    t0: float
    in_process = False

    @property
    def plans_dir(self) -> Path:
        return self.manifest.folder

    @property
    def work(self):
        return partial(plan_batch, cfg=self.cfg, vocab=self.vocab, split_dir=self.split_dir)

    def record(self, r: ShardResult) -> None:
        """Add a written shard to the manifest (atomically replaced), so a rerun skips it."""
        self.manifest.record(r.name, {"images": r.images, "rows": r.rows, "sha256": r.sha256,
                                      "issues": [i.__dict__ for i in r.issues], "stats": dict(r.stats)})

    def finish(self) -> RunSummary:
        """Mark the plans complete and write the quarantine report of the whole split."""
        names = [shard_name(k) for k, _ in self.chunks]
        self.manifest.complete(names)
        summary = RunSummary(self.split_dir, len(self.chunks), len(self.chunks) - len(self.todo))
        all_issues = list(self.source_issues)
        for name in names:
            entry = self.manifest.shards[name]
            all_issues.extend(issues_from_dicts(entry["issues"]))
            summary.stats.update(entry["stats"])
        atomic_write_bytes(quarantine_file(self.cfg.output.out, self.cfg.source.split), issues_to_jsonl(all_issues).encode())
        summary.issues = all_issues
        summary.seconds = time.perf_counter() - self.t0
        return summary


def prepare_plan(cfg: PlanConfig, overwrite: bool = False) -> PlanJob:
    """Read the source, check the output folder belongs to this config, and list the shards still to plan."""
    t0 = time.perf_counter()
    q = Quarantine(cfg.strict)
    source = open_source(cfg.source, q, cfg.clip.bounds_tolerance)
    out, split = cfg.output.out, cfg.source.split
    images = source.images
    fp = input_fingerprint(cfg, images)
    manifest = ShardManifest.open(
        plans_dir(out, split), "geopixeld-plans", {"fingerprint": fp},
        on_mismatch="restart" if overwrite else "raise", remove="plans-*.parquet",
        hint="choose another output folder or pass --overwrite",
        schema_version=PLAN_SCHEMA_VERSION, fingerprint=fp, config_hash=cfg.fingerprint(),
        config=json.loads(cfg.model_dump_json()), split=split)
    size = cfg.output.shard_images
    chunks = [(k, images[i : i + size]) for k, i in enumerate(range(0, len(images), size))]
    todo = [(k, chunk) for k, chunk in chunks if not manifest.finished(shard_name(k))]
    return PlanJob(cfg, source.vocabulary, split_dir(out, split), manifest, chunks, todo, list(q.issues), t0)


def run_plan(cfg: PlanConfig, progress: bool = True, overwrite: bool = False, log=print) -> RunSummary:
    """Plan one split on a local process pool. Finished shards of an earlier identical run are kept and skipped."""
    job = prepare_plan(cfg, overwrite)
    workers = min(cfg.workers or os.cpu_count() or 1, max(1, len(job.todo)))
    with tqdm(total=len(job.todo), unit="shard", desc=f"plan {cfg.source.split}", disable=not progress) as bar, \
            ProcessPool(workers) as pool:
        return run_stage(job, pool, progress=bar.update)


def report(summary: RunSummary) -> str:
    return summary.table() + "\n" + format_report(summary.issues)
