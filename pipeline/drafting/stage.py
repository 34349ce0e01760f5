"""The drafting stage over planned shards: one record shard per plan shard, resumable like planning.

With the template drafter no model is involved; every record is grounded (each phrase resolves to its mask)
before it is written, and a record that does not ground is written as failed with the reason, never as ok.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import Protocol

import pyarrow.parquet as pq
from tqdm import tqdm

from annotations import template_drafter

from pipeline.contracts.config import SourceConfig
from pipeline.contracts.gcg_schema import GCG_SCHEMA_VERSION, GCGRecord, Provenance, records_to_table, tagged_texts
from pipeline.contracts.grounding import ground, targets_of
from pipeline.contracts.plan_schema import row_to_plan
from pipeline.ingest import vocabulary_for
from pipeline.contracts.records import PatchPlan
from pipeline.contracts.layout import plans_dir, records_dir, reply_cache_file
from pipeline.contracts.shards import PlansNotReady, ShardManifest, require_complete, require_intact, write_table
from pipeline.driver import run_stage


@dataclass
class DraftSummary:
    records_dir: Path
    stats: Counter = field(default_factory=Counter)

    def table(self) -> str:
        s = self.stats
        return (f"Records in {self.records_dir}\n  shards        {s['shards']} ({s['skipped']} already finished, skipped)\n"
                f"  records       {s['records']} ({s['ok']} grounded, {s['failed']} failed)\n"
                f"  phrases       {s['phrases']} ({s['instance_phrases']} instance, {s['group_phrases']} group)"
                + (f"\n  LMM requests  {s['requests_sent']} sent ({s['prompt_tokens']} prompt tokens, "
                   f"{s['completion_tokens']} completion tokens), {s['cache_hits']} answered from the cache"
                   if "requests_sent" in s else "")
                + (f"\n  LMM judge     {s['judge_requests']} requests sent ({s['judge_prompt_tokens']} prompt tokens, "
                   f"{s['judge_completion_tokens']} completion tokens); verdicts: {s['judge_yes']} yes, {s['judge_no']} no"
                   if "judge_requests" in s else ""))


def template_record(plan: PatchPlan, vocab) -> GCGRecord:
    d = template_drafter.draft(plan, vocab)
    g = ground(d["description"], targets_of(plan))
    ok = g.ok and not g.missing
    return GCGRecord.for_plan(
        plan,
        Provenance(template_drafter.DRAFTER, template_drafter.VERSION),
        description=d["description"] if ok else None,
        phrases=g.phrases if ok else [],
        holistic=d["holistic"],
        instance_texts=tagged_texts(d["instances"]),
        group_texts=tagged_texts(d["groups"]),
        status="ok" if ok else "failed",
        error=None if ok else "; ".join(g.errors + [f"missing tag {t!r}" for t in g.missing]),
    )


@dataclass
class DraftJob:
    """One split's drafting run for `pipeline.driver.run_stage`: one record shard per plan shard; the manifest is
    written by the driver's thread only. LMM drafting runs in this thread, on the job's event loop."""

    out: Path
    split: str
    plans: dict  # the finished plan manifest
    vocab: object
    rec_dir: Path
    manifest: ShardManifest
    signature: str
    drafting: object = None  # lmm_drafter.Drafting, or None for the template drafter
    cache: object = None
    verify: object = None  # a RecordVerifier: each shard's records verified before it is written

    @property
    def shard_names(self) -> list[str]:
        """Plan shard names, in order; record shard k comes from plan shard k."""
        return sorted(self.plans["shards"])

    @property
    def in_process(self) -> bool:
        return self.drafting is not None

    def source(self, name: str) -> dict:
        """What record shard `name` is drafted from: its plan shard's checksum and the drafter's signature."""
        return {"plan_sha256": self.plans["shards"][name]["sha256"], "drafter": self.signature}

    def is_finished(self, name: str) -> bool:
        return self.manifest.finished(record_shard(name), self.source(name))

    @cached_property
    def todo(self) -> list[str]:
        """The plan shards whose record shard is not finished; checked once (it hashes every record shard)."""
        return [n for n in self.shard_names if not self.is_finished(n)]

    @property
    def work(self):
        return partial(draft_batch, self)

    def draft_shard(self, name: str) -> tuple[str, dict]:
        """Draft one plan shard and write its record shard atomically; returns (record shard, manifest entry)."""
        shard_plans = read_plan_shard(self.out, self.split, self.plans, name)
        if self.drafting is None:
            records = [template_record(p, self.vocab) for p in shard_plans]
        else:
            from pipeline.drafting.lmm_drafter import draft_plans

            records = self.drafting.loop.run_until_complete(draft_plans(shard_plans, Path(self.out) / self.split, self.drafting))
        verified = {}
        if self.verify is not None:  # in the same pass: no second read and write of the shard
            records = self.verify.records(records, shard_plans)
            verified = {"verified": self.verify.fingerprint(), "check_stats": self.verify.stats(records)}
        stats = record_stats(records)
        rec_name = record_shard(name)
        sha = write_table(records_to_table(records), self.rec_dir / rec_name)
        return rec_name, {"sha256": sha, "source": self.source(name), "rows": len(records), "stats": dict(stats),
                          **verified}

    def record(self, result: tuple[str, dict]) -> None:
        rec_name, entry = result
        self.manifest.data.pop("verification", None)  # a shard drafted again is not verified yet
        self.manifest.record(rec_name, entry)

    def finish(self) -> DraftSummary:
        summary = DraftSummary(self.rec_dir)
        names = [record_shard(n) for n in self.shard_names]
        self.manifest.drop(set(names))  # record shards whose plan shard is gone
        self.manifest.complete(names)
        for rec_name in names:
            summary.stats.update(self.manifest.shards[rec_name]["stats"])
        summary.stats["shards"] = len(names)
        if self.drafting is not None:
            d = self.drafting
            summary.stats["requests_sent"] = sum(sum(c.state.sent.values()) for c in d.distinct_clients())
            summary.stats["cache_hits"] = self.cache.hits
            summary.stats["prompt_tokens"] = d.tokens["prompt"]
            summary.stats["completion_tokens"] = d.tokens["completion"]
            if d.settings.judge:  # what the judge cost, apart (its requests are in the totals above too)
                j = d.judged
                summary.stats.update(judge_requests=j["requests"], judge_prompt_tokens=j["prompt_tokens"],
                                     judge_completion_tokens=j["completion_tokens"], judge_yes=j["verdict yes"],
                                     judge_no=j["verdict no"])
        return summary

    def close(self) -> None:
        """Close the LMM clients, their event loop and the reply cache."""
        if self.drafting is not None:
            loop = self.drafting.loop
            loop.run_until_complete(self.drafting.aclose())
            loop.close()
            self.cache.close()
            self.drafting = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RecordVerifier(Protocol):
    """What drafting needs of verification (`pipeline.verification.stage.Verifier`, passed in by the caller, as
    this layer does not import it): a shard's records with their checks, the settings' fingerprint the records
    manifest keeps (so the verify stage skips the shard), and the shard's counts of failed checks."""

    def records(self, records: list[GCGRecord], plans: list[PatchPlan]) -> list[GCGRecord]: ...

    def fingerprint(self) -> str: ...

    def stats(self, records: list[GCGRecord]) -> dict: ...


def open_draft(out: Path, split: str, lmm=None, replies: Path | None = None,
               verify: RecordVerifier | None = None) -> DraftJob:
    """Check the split's plans are finished and set up the drafter: `lmm` (LMMSettings) drafts with vLLM,
    `replies` (a JSONL file, pipeline.drafting.replay) replays drafts made elsewhere, else the template drafter.
    With `verify` every shard is verified as it is drafted."""
    plans = require_complete(plans_dir(out, split), PlansNotReady, f"run `geopixeld plan` for split {split!r} first")
    vocab = vocabulary_for(SourceConfig.model_validate(plans["config"]["source"]))
    rec_dir = records_dir(out, split)
    if replies is not None:  # checked whole before the records folder is touched
        if lmm is not None:
            raise ValueError("a replay sends no request: give replies or LMM servers, not both")
        from pipeline.drafting.replay import check_patches, read_replies

        replayed = read_replies(replies)
        check_patches(replayed, planned_patches(out, split, plans), split)
    # records of another schema version are drafted again (their shards are overwritten one by one)
    manifest = ShardManifest.open(rec_dir, "geopixeld-records", {"schema_version": GCG_SCHEMA_VERSION},
                                  on_mismatch="restart", schema_version=GCG_SCHEMA_VERSION)
    if lmm is None and replies is None:
        # the drafter's version in the signature: records of an earlier template are drafted again
        return DraftJob(out, split, plans, vocab, rec_dir, manifest, f"{template_drafter.DRAFTER}:{template_drafter.VERSION}",
                        verify=verify)
    from pipeline.drafting.reply_cache import ReplyCache
    from pipeline.drafting.lmm_drafter import DRAFTER_VERSION, Drafting, used_templates

    cache = ReplyCache(reply_cache_file(out, split))
    loop = asyncio.new_event_loop()  # one loop for the whole run: the client's pool and semaphore live on it
    if replies is not None:
        from pipeline.drafting.lmm_drafter import LMMSettings
        from pipeline.drafting.replay import REPLAY_VERSION

        drafting = Drafting(LMMSettings([]), cache, replies=replayed, loop=loop)
        signature = "replay:" + json.dumps({"version": REPLAY_VERSION, "drafter": DRAFTER_VERSION,
                                            "sha256": replayed.sha256}, sort_keys=True)
        return DraftJob(out, split, plans, vocab, rec_dir, manifest, signature, drafting, cache, verify)

    async def make() -> Drafting:
        return Drafting(lmm, cache)

    drafting = loop.run_until_complete(make())
    drafting.loop = loop
    if lmm.probe_schema:  # a server that ignores response_format is named now, not reply by reply
        from pipeline.drafting.schema_probe import probe_structured_output

        async def probe_all() -> None:
            await asyncio.gather(*(probe_structured_output(c) for c in drafting.distinct_clients()))

        try:
            loop.run_until_complete(probe_all())
        except BaseException:
            loop.run_until_complete(drafting.aclose())
            loop.close()
            cache.close()
            raise
    models = {t: sorted(e.model for e in lmm.pool(t)) for t in lmm.tiers()}
    signature = "lmm:" + json.dumps({"version": DRAFTER_VERSION, "models": models, **lmm.sampling(),
                                     "prompts": {n: t.sha256 for n, t in used_templates(drafting).items()}}, sort_keys=True)
    return DraftJob(out, split, plans, vocab, rec_dir, manifest, signature, drafting, cache, verify)


def read_plan_shard(out: Path, split: str, plans: dict, name: str) -> list[PatchPlan]:
    """The plans of one plan shard, once its file is checked against the plan manifest `plans`."""
    path = require_intact(plans_dir(out, split), plans, name, PlansNotReady,
                          f"run `geopixeld plan` for split {split!r} again (it replans changed shards)")
    return [row_to_plan(r) for r in pq.read_table(path).to_pylist()]


def record_stats(records: list[GCGRecord]) -> Counter:
    """A record shard's counts in its manifest entry (drafting writes them, verification brings them up to date)."""
    return Counter(records=len(records), ok=sum(r.status == "ok" for r in records),
                   failed=sum(r.status != "ok" for r in records), phrases=sum(len(r.phrases) for r in records),
                   instance_phrases=sum(p.tier == "instance" for r in records for p in r.phrases),
                   group_phrases=sum(p.tier == "group" for r in records for p in r.phrases))


def iter_plans(out: Path, split: str):
    """Every plan of a finished split, shard by shard (the cost estimate reads them all)."""
    plans = require_complete(plans_dir(out, split), PlansNotReady, f"run `geopixeld plan` for split {split!r} first")
    for name in sorted(plans["shards"]):
        yield from read_plan_shard(out, split, plans, name)


def planned_patches(out: Path, split: str, plans: dict) -> set[str]:
    """Every planned patch id of a split (the `patch_id` column of its intact plan shards)."""
    folder, ids = plans_dir(out, split), set()
    for name in sorted(plans["shards"]):
        path = require_intact(folder, plans, name, PlansNotReady, f"run `geopixeld plan` for split {split!r} again")
        ids.update(pq.read_table(path, columns=["patch_id"])["patch_id"].to_pylist())
    return ids


def run_draft(out: Path, split: str, progress: bool = True, lmm=None, replies: Path | None = None,
              verify: RecordVerifier | None = None) -> DraftSummary:
    """Draft every plan shard of a split; `lmm` (LMMSettings) drafts with vLLM, `replies` replays a JSONL file of
    drafts made elsewhere, else the template drafter; `verify` verifies each shard before it is written."""
    with open_draft(out, split, lmm, replies, verify) as job:
        todo = job.todo
        with tqdm(total=len(todo), desc=f"draft {split}", unit="shard", disable=not progress) as bar:
            summary = run_stage(job, progress=bar.update)
        summary.stats["skipped"] = len(job.shard_names) - len(todo)
        return summary


def record_shard(plan_shard: str) -> str:
    """Record shard k is drafted from plan shard k."""
    return plan_shard.replace("plans-", "records-")


def plan_shard_of(record_shard: str) -> str:
    """The plan shard a record shard was drafted from (the inverse of `record_shard`)."""
    return record_shard.replace("records-", "plans-", 1)


def draft_batch(job: DraftJob, names: list[str]) -> list[tuple[str, dict]]:
    """The stage's work: draft a batch of plan shards; returns (record shard, manifest entry) pairs."""
    return [job.draft_shard(n) for n in names]

