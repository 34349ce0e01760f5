"""`build-geopixeld`: the whole dataset build as one Prefect flow; it only orchestrates.

Stages, per split: ingest (read the source, list the shards still to do), tile-and-plan, draft (holistic,
instance, group and merge requests, or the template drafter), verify (every text checked against its plan's
facts, the failed checks written into the records), validate (re-check every grounded phrase from the files); then stage-curation and write-dataset over all splits. Task runs take batches of shards (each task run
costs the server about 70 ms of CPU), so an iSAID-scale build stays in the hundreds of task runs.

Where work runs (`task_runner`): `local` runs the tasks on threads and their CPU work on a process pool of this
machine; `dask` runs the CPU tasks on a `distributed` cluster. Each stage runs through `pipeline.driver.run_stage`
(the same driver as the CLI's), with `TaskRuns` below as its runner. Resume comes from the stages themselves:
every shard is written atomically and recorded in its folder's `ShardManifest`, LMM replies are cached, so a
build killed at any point and started again skips what is finished.

(No `from __future__ import annotations` here: Prefect validates served runs' parameters from the annotations.)
"""

import re
import time
from collections import Counter
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from tqdm import tqdm

from flows import pool
from flows.params import BuildParams
from pipeline import driver
from pipeline.contracts.paper import per_patch_table
from pipeline.drafting.stage import open_draft
from pipeline.planning.stage import prepare_plan
from pipeline.release.dataset import dataset_folder, write_dataset
from pipeline.synthetic.isaid import ensure_source
from pipeline.verification.records import validate_records
from pipeline.verification.stage import draft_verifier, prepare_verify

FLOW_NAME = "build-geopixeld"


class StageProgress:
    """A terminal bar (in-process runs) and a Prefect progress artifact for one stage of one split."""

    def __init__(self, key: str, total: int, unit: str, show: bool):
        self.total, self.done = max(total, 1), 0
        self.bar = tqdm(total=total, desc=key, unit=unit, disable=not show)
        self.artifact = create_progress_artifact(progress=0.0, key=key, description=f"{key}: {total} {unit}")
        self.last = time.monotonic()

    def step(self, n: int = 1) -> None:
        self.done += n
        self.bar.update(n)
        now = time.monotonic()
        if now - self.last >= 2.0:  # each update is a call to the server: at most one every 2 s
            update_progress_artifact(self.artifact, progress=100.0 * self.done / self.total)
            self.last = now

    def close(self) -> None:
        update_progress_artifact(self.artifact, progress=100.0)
        self.bar.close()


class TaskRuns:
    """A `pipeline.driver` runner that submits each batch of a stage's work as a run of a Prefect task; the CPU
    work inside runs on the flow's local process pool when it holds one, else in the task (a Dask worker)."""

    def __init__(self, task_fn):
        self.task_fn = task_fn

    def map(self, fn, batches):
        yield from (f.result() for f in as_completed([self.task_fn.submit(fn, b) for b in batches]))

    def map_in_thread(self, fn, batches):
        """One task run after the other, each in this thread (LMM drafting: its event loop lives here)."""
        yield from (self.task_fn(fn, b, here=True) for b in batches)


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key (lowercase letters, digits and dashes only) from a stage and a split name."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower())


def _run(fn, batch, here: bool):
    p = None if here else pool.current()
    return p.submit(fn, batch).result() if p else fn(batch)


@task(name="ingest", cache_policy=NO_CACHE)
def ingest(params: BuildParams, split: str):
    cfg = params.plan_config(split)
    ensure_source(params.source.root, [cfg.source.folder], params.source.synthetic, log=get_run_logger().info)
    return prepare_plan(cfg, overwrite=params.overwrite)


@task(name="tile-and-plan", cache_policy=NO_CACHE)
def tile_and_plan(work, batch, here: bool = False):
    return _run(work, batch, here)


@task(name="draft", cache_policy=NO_CACHE)
def draft(work, batch, here: bool = False):
    return _run(work, batch, here)


@task(name="verify", cache_policy=NO_CACHE)
def verify(work, batch, here: bool = False):
    return _run(work, batch, here)


@task(name="validate", cache_policy=NO_CACHE)
def validate(out: Path, split: str) -> dict:
    return dict(validate_records(out, split))


@task(name="stage-curation", cache_policy=NO_CACHE)
def stage_curation(params: BuildParams) -> dict:
    """Export curation sheets for the splits that need a curator's decision before release, and (verification
    policy `flag`) of the flagged patches of the other splits."""
    from pipeline.curation import stage_flagged, stage_for_build

    staged = {}
    for s in params.splits:
        if s in params.dataset.require_curation:
            staged[s] = stage_for_build(params.output.out, s)
        elif flags_to_curate(params):
            staged[s] = stage_flagged(params.output.out, s)
    return staged


def flags_to_curate(params: BuildParams) -> bool:
    return params.verification.enabled and params.verification.policy == "flag"


@task(name="write-dataset", cache_policy=NO_CACHE)
def write(params: BuildParams):
    return write_dataset(params.output.out, params.splits, params.release_settings())  # marked when synthetic


def plan_split(params: BuildParams, split: str, counts: Counter) -> dict:
    job = ingest(params, split)
    progress = StageProgress(artifact_key("plan", split), len(job.todo), "shard", params.progress)
    counts["task runs"] += len(driver.batches(job.todo, params.batch_shards)) + 1
    summary = driver.run_stage(job, TaskRuns(tile_and_plan), params.batch_shards, progress.step)
    progress.close()
    get_run_logger().info(summary.table())
    # the tier mix before anything is paid for: tune `tiers` until it reads like GeoPixelD, then draft
    create_markdown_artifact(key=artifact_key("plan", split, "tiers"), markdown=per_patch_table(summary.stats),
                             description=f"Planned phrases per patch of split {split} beside GeoPixelD train's")
    return {"images": summary.stats["images"], "patches": summary.stats["patches"], "kept": summary.stats["kept"],
            "quarantined": len(summary.issues), "skipped shards": summary.shards_skipped}


def draft_split(params: BuildParams, split: str, counts: Counter) -> dict:
    if params.lmm is not None:  # what the requests will cost, before the first is sent
        from pipeline.drafting.estimate import estimate_report
        from pipeline.drafting.stage import iter_plans

        table = estimate_report(list(iter_plans(params.output.out, split)), params.lmm.family, params.lmm.instance_mode,
                                prompts_dir=params.lmm.prompts_dir, judge=params.lmm_settings().judge)
        get_run_logger().info(table)
        create_markdown_artifact(key=artifact_key("draft", split, "estimate"), markdown=f"```\n{table}\n```",
                                 description=f"The cost of drafting split {split} (requests and tokens per tier)")
    # each shard verified as it is written (one read and write of the records); the verify task does the rest
    with open_draft(params.output.out, split, params.lmm_settings(), verify=draft_verifier(params.verification)) as job:
        todo = job.todo
        progress = StageProgress(artifact_key("draft", split), len(todo), "shard", params.progress)
        groups = driver.batches(todo, params.batch_shards)
        counts["task runs"] += len(groups)
        # template drafting on the pool; LMM drafting in this thread, one batch at a time (requests in flight
        # within it) on the job's event loop: the driver calls `map_in_thread` for `in_process` jobs
        summary = driver.run_stage(job, TaskRuns(draft), params.batch_shards, progress.step)
        progress.close()
    get_run_logger().info(summary.table())
    s = summary.stats
    return {k: s[k] for k in ("records", "ok", "failed", "phrases", "instance_phrases", "group_phrases",
                              "requests_sent", "cache_hits") if k in s}


def verify_split(params: BuildParams, split: str, counts: Counter) -> dict:
    """Check every drafted text against its plan; the failed checks go into the records and a table artifact."""
    job = prepare_verify(params.output.out, split, params.verification)
    todo, total = job.todo, len(job.manifest.shards)
    progress = StageProgress(artifact_key("verify", split), total, "shard", params.progress)
    progress.step(total - len(todo))  # verified by the draft task as they were written
    counts["task runs"] += len(driver.batches(todo, params.batch_shards))
    summary = driver.run_stage(job, TaskRuns(verify), params.batch_shards, progress.step)
    summary.skipped = total - len(todo)
    progress.close()
    get_run_logger().info(summary.table())
    s = summary.stats
    by = sorted((k.split(": ", 1)[1], v) for k, v in s.items() if k.startswith(("check: ", "tier: ")))
    create_table_artifact(key=artifact_key("verify", split, "checks"),
                          table=[{"check or tier": k, "failed": v} for k, v in by] or [{"check or tier": "none", "failed": 0}],
                          description=f"Failed checks of split {split}: {s['flagged']} of {s['verified']} patches "
                          f"flagged (policy {summary.policy})")
    return {"verified": s["verified"], "flagged": s["flagged"], "dropped by verification": s["dropped by verification"]}


@flow(name="build-splits")
def build_splits(params: BuildParams) -> dict:
    """Per split: plan, draft and validate (on the build's task runner)."""
    counts, rows = Counter(), []
    with pool.local_pool(params):
        for split in params.splits:
            stages = [("plan", plan_split), ("draft", draft_split)]
            stages += [("verify", verify_split)] if params.verification.enabled else []
            for stage, fn in stages:
                t0 = time.perf_counter()
                res = fn(params, split, counts)
                rows.append({"split": split, "stage": stage, "seconds": round(time.perf_counter() - t0, 2), **res})
            t0 = time.perf_counter()
            res = validate(params.output.out, split)
            counts["task runs"] += 1
            rows.append({"split": split, "stage": "validate", "seconds": round(time.perf_counter() - t0, 2), **res})
    return {"rows": rows, "task_runs": counts["task runs"]}


@flow(name=FLOW_NAME)
def build_geopixeld(params: BuildParams = BuildParams()) -> dict:
    """Build a GeoPixelD-style dataset: tile, plan, draft, validate, stage curation, write Parquet and the card."""
    logger = get_run_logger()
    driver.check_writable(params.output.out)
    with driver.output_lock(params.output.out, log=logger.warning):
        if params.task_runner.kind == "local":  # the flow's own thread runner; a sub-flow only to change runners
            inner = build_splits.fn(params)
        else:
            inner = build_splits.with_options(task_runner=pool.dask_runner(params))(params)
        rows, task_runs = inner["rows"], inner["task_runs"]
        if flags_to_curate(params) or any(s in params.dataset.require_curation for s in params.splits):
            t0 = time.perf_counter()
            staged = stage_curation(params)
            task_runs += 1
            for split, res in staged.items():
                rows.append({"split": split, "stage": "stage-curation", "seconds": round(time.perf_counter() - t0, 2),
                             **res})
        t0 = time.perf_counter()
        summary = write(params)
        task_runs += 1
    for split, r in summary.splits.items():
        rows.append({"split": split, "stage": "write-dataset", "seconds": round(time.perf_counter() - t0, 2),
                     "rows": r.rows, "phrases": r.stats["phrases"], "held back": r.held_back or ""})
    logger.info(summary.table())
    synthetic = params.synthetic()
    note = f"SYNTHETIC DATA (the demo generator's, from {params.source.root}): " if synthetic else ""
    if synthetic:
        logger.warning(f"{note}this dataset is not built from real imagery")
    create_table_artifact(key="build-geopixeld-stages", table=_columns(rows),
                          description=f"{note}Counts, failures and time per stage ({task_runs} task runs)")
    card = (dataset_folder(params.output.out, params.dataset) / "README.md").read_text()
    create_markdown_artifact(key="build-geopixeld-card", markdown=card.split("---\n", 2)[-1],
                             description="The dataset card of this build")
    logger.info(f"dataset: {summary.folder} ({task_runs} task runs)")
    return {"dataset": str(summary.folder), "stages": rows, "task_runs": task_runs, "synthetic": synthetic,
            "rows": {s: r.rows for s, r in summary.splits.items()}}


def _columns(rows: list[dict]) -> list[dict]:
    """Table artifact rows with the same keys (missing cells empty)."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return [{k: r.get(k, "") for k in keys} for r in rows]
