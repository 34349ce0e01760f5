"""The build's stages called directly, without Prefect, in the same order and on the same kind of process pool:
the baseline of the Prefect overhead benchmark (bench/prefect_overhead.py) and of the test that the flow builds
exactly what the stages build."""

from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import nullcontext
from multiprocessing import get_context

from flows.params import BuildParams
from pipeline import driver as stages
from pipeline.release.dataset import write_dataset
from pipeline.drafting.stage import open_draft
from pipeline.planning.stage import prepare_plan


def direct_build(params: BuildParams):
    """Plan, draft, validate every split, then write the dataset; returns the DatasetSummary."""
    stages.check_writable(params.output.out)
    workers = params.cpu_workers()
    ctx = ProcessPoolExecutor(workers, mp_context=get_context("spawn")) if workers > 1 else nullcontext()
    with stages.output_lock(params.output.out), ctx as pool:
        run = (lambda fn, *a: pool.submit(fn, *a)) if pool else (lambda fn, *a: _Done(fn(*a)))
        for split in params.splits:
            stages.ensure_source(params.source.root, [split], params.source.synthetic, log=lambda m: None)
            job = prepare_plan(params.plan_config(split), overwrite=params.overwrite)
            futs = [run(stages.plan_batch, b, job.cfg, job.vocab, job.split_dir)
                    for b in stages.batches(job.todo, params.batch_shards)]
            for f in _completed(futs):
                for r in f.result():
                    job.record(r)
            job.finish()
            with open_draft(params.output.out, split, params.lmm.settings() if params.lmm else None) as dj:
                todo = stages.batches([n for n in dj.shard_names if not dj.is_finished(n)], params.batch_shards)
                if dj.drafting is None:
                    results = (f.result() for f in _completed([run(stages.draft_batch, dj, g) for g in todo]))
                else:
                    results = (stages.draft_batch(dj, g) for g in todo)
                for entries in results:
                    for rec_name, entry in entries:
                        dj.record(rec_name, entry)
                dj.finish()
            stages.validate_records(params.output.out, split)
        return write_dataset(params.output.out, params.splits, params.dataset)


class _Done:
    def __init__(self, value):
        self._v = value

    def result(self):
        return self._v


def _completed(futs):
    return as_completed(futs) if futs and not isinstance(futs[0], _Done) else futs
