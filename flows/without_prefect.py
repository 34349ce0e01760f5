"""The build's stages through the same stage driver as the flow, without Prefect: the baseline of the Prefect
overhead benchmark (bench/prefect_overhead.py) and the reference the flow tests compare the flow's dataset to."""

from flows.params import BuildParams
from pipeline import driver
from pipeline.drafting.stage import open_draft
from pipeline.planning.stage import prepare_plan
from pipeline.release.dataset import write_dataset
from pipeline.synthetic.isaid import ensure_source
from pipeline.verification.records import validate_records
from pipeline.verification.stage import draft_verifier, prepare_verify


def build_without_prefect(params: BuildParams):
    """Plan, draft, verify, validate every split, then write the dataset; returns the DatasetSummary."""
    driver.check_writable(params.output.out)
    with driver.output_lock(params.output.out), driver.ProcessPool(params.cpu_workers()) as pool:
        for split in params.splits:
            cfg = params.plan_config(split)
            ensure_source(params.source.root, [cfg.source.folder], params.source.synthetic, log=lambda m: None)
            driver.run_stage(prepare_plan(cfg, overwrite=params.overwrite), pool,
                             params.batch_shards)
            with open_draft(params.output.out, split, params.lmm_settings(),
                            verify=draft_verifier(params.verification)) as job:  # as the flow drafts
                driver.run_stage(job, pool, params.batch_shards)
            if params.verification.enabled:
                driver.run_stage(prepare_verify(params.output.out, split, params.verification), pool, params.batch_shards)
            validate_records(params.output.out, split)
        return write_dataset(params.output.out, params.splits, params.release_settings())
