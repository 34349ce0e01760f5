"""A planning run: read the source, plan its images shard by shard on a process pool, resume where a
previous run stopped, and report the quarantine at the end."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from tqdm import tqdm

from pipeline.contracts.categories import Vocabulary
from pipeline.contracts.config import PlanConfig
from pipeline.contracts.imageio import atomic_write_bytes, sync_outputs
from pipeline.contracts.plan_schema import PLAN_SCHEMA_VERSION, plans_to_table
from pipeline.planning.planner import plan_image
from pipeline.contracts.quarantine import Issue, Quarantine, format_report, issues_from_dicts, issues_to_jsonl
from pipeline.ingest import open_source
from pipeline.contracts.records import SourceImage
from pipeline.contracts.shards import finished, read_manifest, write_manifest, write_table


class OutputMismatch(ValueError):
    """The output folder holds a run of another config or input; refuse to mix them."""


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


def input_fingerprint(cfg: PlanConfig, images: list[SourceImage]) -> str:
    h = hashlib.sha256(cfg.fingerprint().encode())
    h.update(str(cfg.output.shard_images).encode())
    for im in images:
        h.update(f"{im.name}:{im.rel_path}:{len(im.objects)}\n".encode())
    return h.hexdigest()[:16]


@dataclass
class PlanJob:
    """One split's planning run, split into prepare / plan shards / record / finish so that an orchestrator
    (the Prefect flow, or `run_plan` below) can run the shards wherever it likes."""

    cfg: PlanConfig
    vocab: Vocabulary
    split_dir: Path
    manifest: dict
    chunks: list[tuple[int, list[SourceImage]]]
    todo: list[tuple[int, list[SourceImage]]]
    source_issues: list[Issue]
    t0: float

    @property
    def plans_dir(self) -> Path:
        return self.split_dir / "plans"

    def record(self, r: ShardResult) -> None:
        """Add a written shard to the manifest (atomically replaced), so a rerun skips it."""
        self.manifest["shards"][r.name] = {
            "images": r.images, "rows": r.rows, "sha256": r.sha256,
            "issues": [i.__dict__ for i in r.issues], "stats": dict(r.stats),
        }
        write_manifest(self.plans_dir, self.manifest)

    def finish(self) -> RunSummary:
        """Mark the plans complete and write the quarantine report of the whole split."""
        missing = [shard_name(k) for k, _ in self.chunks if shard_name(k) not in self.manifest["shards"]]
        if missing:
            raise RuntimeError(f"{self.plans_dir}: shards never planned: {', '.join(missing[:5])}")
        m = self.manifest
        m["complete"] = True
        m["rows"] = sum(s["rows"] for s in m["shards"].values())
        write_manifest(self.plans_dir, m)
        summary = RunSummary(self.split_dir, len(self.chunks), len(self.chunks) - len(self.todo))
        all_issues = list(self.source_issues)
        for k, _ in self.chunks:
            entry = m["shards"][shard_name(k)]
            all_issues.extend(issues_from_dicts(entry["issues"]))
            summary.stats.update(entry["stats"])
        atomic_write_bytes(self.split_dir / "quarantine.jsonl", issues_to_jsonl(all_issues).encode())
        summary.issues = all_issues
        summary.seconds = time.perf_counter() - self.t0
        return summary


def prepare_plan(cfg: PlanConfig, overwrite: bool = False) -> PlanJob:
    """Read the source, check the output folder belongs to this config, and list the shards still to plan."""
    t0 = time.perf_counter()
    q = Quarantine(cfg.strict)
    source = open_source(cfg.source, q, cfg.clip.bounds_tolerance)
    split_dir = Path(cfg.output.out) / cfg.source.split
    plans_dir = split_dir / "plans"
    plans_dir.mkdir(parents=True, exist_ok=True)
    images = source.images
    fp = input_fingerprint(cfg, images)
    manifest = read_manifest(plans_dir)
    if manifest and manifest.get("fingerprint") != fp:
        if not overwrite:
            raise OutputMismatch(
                f"{plans_dir} holds plans of another config or input (fingerprint {manifest.get('fingerprint')}, "
                f"this run {fp}); choose another output folder or pass --overwrite"
            )
        for old in plans_dir.glob("plans-*.parquet"):
            old.unlink()
        manifest = None
    manifest = manifest or {
        "kind": "geopixeld-plans",
        "schema_version": PLAN_SCHEMA_VERSION,
        "fingerprint": fp,
        "config_hash": cfg.fingerprint(),
        "config": json.loads(cfg.model_dump_json()),
        "split": cfg.source.split,
        "shards": {},
    }
    size = cfg.output.shard_images
    chunks = [(k, images[i : i + size]) for k, i in enumerate(range(0, len(images), size))]
    todo = [(k, chunk) for k, chunk in chunks if not finished(plans_dir, manifest, shard_name(k))]
    manifest["complete"] = False
    write_manifest(plans_dir, manifest)
    return PlanJob(cfg, source.vocabulary, split_dir, manifest, chunks, todo, list(q.issues), t0)


def run_plan(cfg: PlanConfig, progress: bool = True, overwrite: bool = False, log=print) -> RunSummary:
    """Plan one split on a local process pool. Finished shards of an earlier identical run are kept and skipped."""
    job = prepare_plan(cfg, overwrite)
    todo = job.todo

    def record(r: ShardResult) -> None:
        job.record(r)
        bar.update(len(r.images))

    workers = cfg.workers or os.cpu_count() or 1
    bar = tqdm(total=sum(len(c) for _, c in todo), unit="img", desc=f"plan {cfg.source.split}", disable=not progress)
    try:
        if workers == 1 or len(todo) <= 1:
            for k, chunk in todo:
                record(plan_shard(k, chunk, cfg, job.vocab, job.split_dir))
        else:
            with ProcessPoolExecutor(min(workers, len(todo)), mp_context=get_context("spawn")) as pool:
                futures = {pool.submit(plan_shard, k, chunk, cfg, job.vocab, job.split_dir) for k, chunk in todo}
                try:
                    while futures:
                        done, futures = wait(futures, return_when=FIRST_EXCEPTION)
                        for f in done:
                            record(f.result())  # re-raises a worker's BadRecord (strict mode)
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)  # finished shards stay; nothing half-written
                    raise
    finally:
        bar.close()
    return job.finish()


def report(summary: RunSummary) -> str:
    return summary.table() + "\n" + format_report(summary.issues)
