"""The drafting stage over planned shards: one record shard per plan shard, resumable like planning.

With the template drafter no model is involved; every record is grounded (each phrase resolves to its mask)
before it is written, and a record that does not ground is written as failed with the reason, never as ok.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from annotations import template_drafter

from pipeline.contracts.config import SourceConfig
from pipeline.contracts.gcg_schema import GCG_SCHEMA, GCG_SCHEMA_VERSION, new_record, tier_texts
from pipeline.contracts.grounding import ground, targets_of
from pipeline.contracts.plan_schema import row_to_plan
from pipeline.ingest import vocabulary_for
from pipeline.contracts.records import PatchPlan
from pipeline.contracts.shards import finished, read_manifest, write_manifest, write_table


class PlansNotReady(ValueError):
    """The plans of a split are missing or unfinished."""


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
                   if "requests_sent" in s else ""))


def template_record(plan: PatchPlan, vocab) -> dict:
    d = template_drafter.draft(plan, vocab)
    g = ground(d["description"], targets_of(plan))
    ok = g.ok and not g.missing
    return new_record(
        plan,
        {"drafter": template_drafter.DRAFTER, "drafter_version": template_drafter.VERSION, "model": None,
         "sampling": None, "prompt_hashes": [], "prompts": []},
        description=d["description"] if ok else None,
        phrases=[p.__dict__ for p in g.phrases] if ok else [],
        holistic=d["holistic"],
        instance_texts=tier_texts(d["instances"]),
        group_texts=tier_texts(d["groups"]),
        status="ok" if ok else "failed",
        error=None if ok else "; ".join(g.errors + [f"missing tag {t!r}" for t in g.missing]),
    )


@dataclass
class DraftJob:
    """One split's drafting run, shard by shard, so an orchestrator (the Prefect flow, or `run_draft`) decides
    how shards are batched; the manifest is written by the caller's thread only."""

    out: Path
    split: str
    plans: dict  # the finished plan manifest
    vocab: object
    rec_dir: Path
    manifest: dict
    signature: str
    drafting: object = None  # lmm_draft.Drafting, or None for the template drafter
    cache: object = None

    @property
    def shard_names(self) -> list[str]:
        """Plan shard names, in order; record shard k comes from plan shard k."""
        return sorted(self.plans["shards"])

    def is_finished(self, name: str) -> bool:
        rec_name = name.replace("plans-", "records-")
        entry = self.manifest["shards"].get(rec_name)
        return bool(entry and entry["plan_sha256"] == self.plans["shards"][name]["sha256"]
                    and entry.get("drafter") == self.signature and finished(self.rec_dir, self.manifest, rec_name))

    def draft_shard(self, name: str) -> tuple[str, dict]:
        """Draft one plan shard and write its record shard atomically; returns (record shard, manifest entry)."""
        plans_dir = Path(self.out) / self.split / "plans"
        shard_plans = [row_to_plan(r) for r in pq.read_table(plans_dir / name).to_pylist()]
        if self.drafting is None:
            rows = [template_record(p, self.vocab) for p in shard_plans]
        else:
            from pipeline.drafting.lmm_drafter import draft_plans

            rows = self.drafting.loop.run_until_complete(draft_plans(shard_plans, Path(self.out) / self.split, self.drafting))
        stats = Counter(records=len(rows), ok=sum(r["status"] == "ok" for r in rows),
                        failed=sum(r["status"] != "ok" for r in rows),
                        phrases=sum(len(r["phrases"]) for r in rows),
                        instance_phrases=sum(p["kind"] == "instance" for r in rows for p in r["phrases"]),
                        group_phrases=sum(p["kind"] == "group" for r in rows for p in r["phrases"]))
        rec_name = name.replace("plans-", "records-")
        sha = write_table(pa.Table.from_pylist(rows, schema=GCG_SCHEMA), self.rec_dir / rec_name)
        return rec_name, {"sha256": sha, "plan_sha256": self.plans["shards"][name]["sha256"], "drafter": self.signature,
                          "rows": len(rows), "stats": dict(stats)}

    def record(self, rec_name: str, entry: dict) -> None:
        self.manifest["shards"][rec_name] = entry
        write_manifest(self.rec_dir, self.manifest)

    def finish(self) -> DraftSummary:
        summary = DraftSummary(self.rec_dir)
        for name in self.shard_names:
            rec_name = name.replace("plans-", "records-")
            if rec_name not in self.manifest["shards"]:
                raise RuntimeError(f"{self.rec_dir}: shard {rec_name} was never drafted")
            summary.stats.update(self.manifest["shards"][rec_name]["stats"])
        summary.stats["shards"] = len(self.shard_names)
        self.manifest["complete"] = True
        self.manifest["rows"] = sum(self.manifest["shards"][n.replace("plans-", "records-")]["rows"] for n in self.shard_names)
        write_manifest(self.rec_dir, self.manifest)
        if self.drafting is not None:
            d = self.drafting
            summary.stats["requests_sent"] = sum(sum(c.state.sent.values()) for c in d.distinct_clients())
            summary.stats["cache_hits"] = self.cache.hits
            summary.stats["prompt_tokens"] = d.tokens["prompt"]
            summary.stats["completion_tokens"] = d.tokens["completion"]
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


def open_draft(out: Path, split: str, lmm=None) -> DraftJob:
    """Check the split's plans are finished and set up the drafter (`lmm`: LMMSettings, else the template drafter)."""
    plans_dir = Path(out) / split / "plans"
    plans = read_manifest(plans_dir)
    if not plans or not plans.get("complete"):
        raise PlansNotReady(f"{plans_dir}: no finished plans; run `geopixeld plan` for split {split!r} first")
    vocab = vocabulary_for(SourceConfig.model_validate(plans["config"]["source"]))
    rec_dir = Path(out) / split / "records"
    rec_dir.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(rec_dir)
    if not manifest or manifest.get("schema_version") != GCG_SCHEMA_VERSION:  # records of another schema: redraft
        manifest = {"kind": "geopixeld-records", "schema_version": GCG_SCHEMA_VERSION, "shards": {}}
    if lmm is None:
        return DraftJob(out, split, plans, vocab, rec_dir, manifest, template_drafter.DRAFTER)
    from pipeline.drafting.reply_cache import ReplyCache
    from pipeline.drafting.lmm_drafter import DRAFTER_VERSION, Drafting

    cache = ReplyCache(Path(out) / split / "lmm_cache.sqlite")
    loop = asyncio.new_event_loop()  # one loop for the whole run: the client's pool and semaphore live on it

    async def make() -> Drafting:
        return Drafting(lmm, cache)

    drafting = loop.run_until_complete(make())
    drafting.loop = loop
    models = {t: sorted(e.model for e in lmm.pool(t)) for t in ("holistic", "instance", "group", "merge")}
    signature = "lmm:" + json.dumps({"version": DRAFTER_VERSION, "models": models, **lmm.sampling(),
                                     "prompts": {n: t.sha256 for n, t in drafting.templates.items()}}, sort_keys=True)
    return DraftJob(out, split, plans, vocab, rec_dir, manifest, signature, drafting, cache)


def run_draft(out: Path, split: str, progress: bool = True, lmm=None) -> DraftSummary:
    """Draft every plan shard of a split; `lmm` (LMMSettings) drafts with vLLM, else the template drafter."""
    with open_draft(out, split, lmm) as job:
        skipped = 0
        for name in tqdm(job.shard_names, desc=f"draft {split}", unit="shard", disable=not progress):
            if job.is_finished(name):
                skipped += 1
                continue
            job.record(*job.draft_shard(name))
        summary = job.finish()
        summary.stats["skipped"] = skipped
        return summary


def export_split(out: Path, split: str, dest: Path, prefix: str = "data/GeoPixelD", records_dir: Path | None = None) -> Path:
    """Write the grounded records of a split (`records_dir`, default OUT/<split>/records) in the released GeoPixelD
    layout; records that failed grounding or that a curator rejected are left out."""
    from pipeline.contracts import masks
    from pipeline.contracts.geopixeld_format import released_record, write_released

    rec_dir = Path(records_dir) if records_dir else Path(out) / split / "records"
    manifest = read_manifest(rec_dir)
    if not manifest or not manifest.get("complete"):
        raise PlansNotReady(f"{rec_dir}: no finished records; run `geopixeld draft` for split {split!r} first")
    items = []
    for name in sorted(manifest["shards"]):
        for r in pq.read_table(rec_dir / name).to_pylist():
            if r["status"] != "ok" or r["curation_status"] == "rejected":
                continue
            phrase_masks = [masks.decode(p["rle"]) for p in r["phrases"]]
            index, per_patch = released_record(len(items), r["patch_id"], r["description"], phrase_masks, prefix, split)
            png = Path(out) / split / r["image_path"] if r["image_path"] else None
            items.append((index, per_patch, png))
    return write_released(Path(dest), split, items)

