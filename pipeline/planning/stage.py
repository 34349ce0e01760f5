"""The planning stage: read the source, plan its images shard by shard, resume where a previous run stopped,
and report the quarantine at the end. `prepare_plan` makes the job; `pipeline.driver.run_stage` runs it.

Patch ids name the PNGs, so they must be unique per split: two source images that would give the same id are
refused before anything is planned (`PatchIdClash`). Every PNG a shard wrote is in its manifest entry with its
size and sha256; a rerun plans again a shard whose PNGs are missing or damaged, and the release checks the
images it copies against the same entries (`planned_files`)."""

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
from pipeline.contracts.fileio import atomic_write_bytes, check_file, sync_outputs
from pipeline.contracts.paper import per_patch_table
from pipeline.contracts.layout import MARKS, PATCHES, plans_dir, quarantine_file, split_dir
from pipeline.contracts.plan_schema import PLAN_SCHEMA_VERSION, plans_to_table
from pipeline.contracts.quarantine import Issue, Quarantine, format_report, issues_from_dicts, issues_to_jsonl
from pipeline.contracts.records import SourceImage
from pipeline.contracts.shards import ShardManifest, read_manifest, write_table
from pipeline.driver import ProcessPool, run_stage
from pipeline.ingest import SourceError, open_source
from pipeline.planning.planner import NothingPlanned, nothing_planned, patch_ids, plan_image


class PatchIdClash(SourceError):
    """Two source images of one split give the same patch id, so one would overwrite the other's PNGs."""


@dataclass
class ShardResult:
    name: str
    images: list[str]
    rows: int
    sha256: str
    issues: list[Issue]
    stats: Counter
    files: dict[str, dict] = field(default_factory=dict)  # PNG path (relative to the split) -> {"size", "sha256"}


@dataclass
class RunSummary:
    split_dir: Path
    shards_total: int
    shards_skipped: int
    stats: Counter = field(default_factory=Counter)
    replanned: list[str] = field(default_factory=list)  # finished shards planned again, and why
    issues: list[Issue] = field(default_factory=list)
    seconds: float = 0.0

    def table(self) -> str:
        s = self.stats
        rate = s["kept"] / self.seconds if self.seconds else 0.0
        lines = [
            f"Plans in {self.split_dir / 'plans'}",
            f"  shards        {self.shards_total} ({self.shards_skipped} already finished, skipped)",
            *(f"  replanned     {why}" for why in self.replanned),
            f"  images        {s['images']}",
            f"  patches       {s['patches']} tiled, {s['kept']} kept",
            f"  objects       {s['objects']} ({s['instances']} marked instances, {s['groups']} groups)",
            "  phrases per patch beside GeoPixelD train's (tune `tiers` before drafting):",
            per_patch_table(s, indent="    "),
            f"  time          {self.seconds:.1f} s ({rate:.1f} patches/s)",
        ]
        for k in sorted(k for k in s if k.startswith("dropped: ")):
            lines.append(f"  {k:<13} {s[k]} patches".replace("dropped: ", "dropped, "))
        return "\n".join(lines)


def shard_name(k: int) -> str:
    return f"plans-{k:05d}.parquet"


def plan_shard(k: int, images: list[SourceImage], cfg: PlanConfig, vocab: Vocabulary, split_dir: Path) -> ShardResult:
    """Plan every image of one shard and write the shard atomically (runs in a worker process)."""
    plans, issues, stats, files = [], [], Counter(), {}
    for img in images:
        res = plan_image(img, cfg, vocab, split_dir)
        for p in res.plans:
            p.split = cfg.source.split
        clash = sorted(set(files) & set(res.files))
        if clash:  # prepare_plan refuses what it can foresee; this is the last guard
            raise PatchIdClash(f"{img.path}: writes {split_dir / clash[0]}, already written for another image of "
                               f"shard {shard_name(k)}; patch ids must be unique per split")
        files.update(res.files)
        plans.extend(res.plans)
        issues.extend(res.issues)
        stats.update(res.stats)
        stats["images"] += 1
    name = shard_name(k)
    sync_outputs()  # the patch and set-of-marks PNGs are on disk before the shard that names them
    sha = write_table(plans_to_table(plans), plans_dir(cfg.output.out, cfg.source.split) / name)
    return ShardResult(name, [im.name for im in images], len(plans), sha, issues, stats, files)


def plan_batch(batch: list[tuple[int, list[SourceImage]]], cfg: PlanConfig, vocab: Vocabulary,
               split_dir: Path) -> list[ShardResult]:
    """The stage's work: plan a batch of shards (each written atomically); the job records them."""
    return [plan_shard(k, chunk, cfg, vocab, split_dir) for k, chunk in batch]


def patch_id_clashes(images: list[SourceImage], cfg: PlanConfig) -> list[str]:
    """One line per pair of source images that would write the same patch id (pure; empty when none do)."""
    owner: dict[str, SourceImage] = {}
    lines, seen = [], set()
    for im in images:
        for pid in sorted(patch_ids(im, cfg)):
            other = owner.setdefault(pid, im)
            if other is im or (id(other), id(im)) in seen:
                continue
            seen.add((id(other), id(im)))
            if other.path == im.path:
                lines.append(f"{im.path} is listed twice (image ids {other.image_id} and {im.image_id})")
            else:
                lines.append(f"{other.path} and {im.path} both give patch id {pid!r}")
    return lines


def shard_files_problem(split_dir: Path, entry: dict) -> str | None:
    """Why a recorded shard's PNGs are not the ones it wrote (the first one found), or None when all are."""
    files = entry.get("files")
    if files is None:
        return "its PNGs were never recorded (planned by an earlier version)"
    for rel, rec in sorted(files.items()):
        why = check_file(split_dir / rel, rec)
        if why:
            return f"{rel} is {why}"
    return None


def planned_files(out: Path, split: str) -> dict[str, dict]:
    """Every PNG the split's recorded plan shards wrote, {path relative to the split: {"size", "sha256"}}
    ({} when no plan manifest is there). The release checks the images it copies against these."""
    m = read_manifest(plans_dir(out, split)) or {}
    files: dict[str, dict] = {}
    for entry in m.get("shards", {}).values():
        files.update(entry.get("files") or {})
    return files


def planned_from(out: Path, split: str) -> str | None:
    """The source folder a split's plans were read from (`val` for GeoPixelD's `test`), from its plan manifest;
    None without one. The dataset card names it beside the released split."""
    cfg = (read_manifest(plans_dir(out, split)) or {}).get("config") or {}
    src = cfg.get("source") or {}
    if "split" not in src:
        return None
    return (src.get("split_folders") or {}).get(src["split"], src["split"])


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
    replanned: list[str] = field(default_factory=list)
    in_process = False

    @property
    def plans_dir(self) -> Path:
        return self.manifest.folder

    @property
    def work(self):
        return partial(plan_batch, cfg=self.cfg, vocab=self.vocab, split_dir=self.split_dir)

    def record(self, r: ShardResult) -> None:
        """Add a written shard to the manifest (atomically replaced), so a rerun skips it."""
        self.manifest.record(r.name, {"images": r.images, "rows": r.rows, "sha256": r.sha256, "files": r.files,
                                      "issues": [i.__dict__ for i in r.issues], "stats": dict(r.stats)})

    def finish(self) -> RunSummary:
        """Mark the plans complete and write the quarantine report of the whole split."""
        names = [shard_name(k) for k, _ in self.chunks]
        writer: dict[str, str] = {}
        for name in names:  # no PNG is named by two shards (what prepare_plan could not foresee)
            for rel in self.manifest.shards.get(name, {}).get("files") or {}:
                if writer.setdefault(rel, name) != name:
                    raise PatchIdClash(f"{self.split_dir / rel}: written by shards {writer[rel]} and {name} of "
                                       f"{self.plans_dir} (images {self.manifest.shards[writer[rel]]['images']} and "
                                       f"{self.manifest.shards[name]['images']}); patch ids must be unique per split")
        summary = RunSummary(self.split_dir, len(self.chunks), len(self.chunks) - len(self.todo),
                             replanned=self.replanned)
        all_issues = list(self.source_issues)
        for name in names:
            entry = self.manifest.shards[name]
            all_issues.extend(issues_from_dicts(entry["issues"]))
            summary.stats.update(entry["stats"])
        report_file = quarantine_file(self.cfg.output.out, self.cfg.source.split)
        atomic_write_bytes(report_file, issues_to_jsonl(all_issues).encode())
        summary.issues = all_issues
        summary.seconds = time.perf_counter() - self.t0
        why = nothing_planned(self.cfg.source.split, summary.stats, all_issues, report_file)
        if why is not None:  # left incomplete: no later stage reads an empty split
            raise NothingPlanned(why, summary)
        self.manifest.complete(names)
        return summary


def prepare_plan(cfg: PlanConfig, overwrite: bool = False) -> PlanJob:
    """Read the source, refuse patch ids two images share, check the output folder belongs to this config, and
    list the shards still to plan: those not finished, and those whose PNGs are missing or damaged.

    `overwrite` replaces the output of another config: its plan shards, PNGs and quarantine report go first."""
    t0 = time.perf_counter()
    q = Quarantine(cfg.strict)
    source = open_source(cfg.source, q, cfg.clip.bounds_tolerance)
    out, split = cfg.output.out, cfg.source.split
    images = source.images
    clashes = patch_id_clashes(images, cfg)
    if clashes:
        more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
        raise PatchIdClash(f"split {split!r}: {clashes[0]}{more}; patch ids must be unique per split, so rename "
                           f"one of the files or list each image once, then plan again")
    fp = input_fingerprint(cfg, images)
    old_outputs = ["plans-*.parquet", f"../{PATCHES}/*.png", f"../{MARKS}/*.png",
                   f"../{quarantine_file(out, split).name}"]  # what --overwrite removes
    manifest = ShardManifest.open(
        plans_dir(out, split), "geopixeld-plans", {"fingerprint": fp},
        on_mismatch="restart" if overwrite else "raise", remove=old_outputs,
        hint="choose another output folder or pass --overwrite",
        schema_version=PLAN_SCHEMA_VERSION, fingerprint=fp, config_hash=cfg.fingerprint(),
        config=json.loads(cfg.model_dump_json()), split=split)
    size = cfg.output.shard_images
    chunks = [(k, images[i : i + size]) for k, i in enumerate(range(0, len(images), size))]
    folder = split_dir(out, split)
    todo, replanned = [], []
    for k, chunk in chunks:
        name = shard_name(k)
        if not manifest.finished(name):
            todo.append((k, chunk))
        elif why := shard_files_problem(folder, manifest.shards[name]):
            todo.append((k, chunk))
            replanned.append(f"{name}: {why}")
    return PlanJob(cfg, source.vocabulary, folder, manifest, chunks, todo, list(q.issues), t0, replanned)


def run_plan(cfg: PlanConfig, progress: bool = True, overwrite: bool = False, log=print) -> RunSummary:
    """Plan one split on a local process pool. Finished shards of an earlier identical run are kept and skipped."""
    job = prepare_plan(cfg, overwrite)
    workers = min(cfg.workers or os.cpu_count() or 1, max(1, len(job.todo)))
    with tqdm(total=len(job.todo), unit="shard", desc=f"plan {cfg.source.split}", disable=not progress) as bar, \
            ProcessPool(workers) as pool:
        return run_stage(job, pool, progress=bar.update)


def report(summary: RunSummary) -> str:
    return summary.table() + "\n" + format_report(summary.issues)
