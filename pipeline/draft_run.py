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

from .config import SourceConfig
from .gcg_schema import GCG_SCHEMA, GCG_SCHEMA_VERSION, new_record, tier_texts
from .grounding import ground, targets_of
from .plan_schema import row_to_plan
from .readers import vocabulary_for
from .records import PatchPlan
from .shards import finished, read_manifest, write_manifest, write_table


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
         "sampling": None, "prompt_hashes": []},
        description=d["description"] if ok else None,
        phrases=[p.__dict__ for p in g.phrases] if ok else [],
        holistic=d["holistic"],
        instance_texts=tier_texts(d["instances"]),
        group_texts=tier_texts(d["groups"]),
        status="ok" if ok else "failed",
        error=None if ok else "; ".join(g.errors + [f"missing tag {t!r}" for t in g.missing]),
    )


def run_draft(out: Path, split: str, progress: bool = True, lmm=None) -> DraftSummary:
    """Draft every plan shard of a split; `lmm` (LMMSettings) drafts with vLLM, else the template drafter."""
    if lmm is None:
        return _run(out, split, progress, None, template_drafter.DRAFTER)
    from .lmm_cache import ReplyCache
    from .lmm_draft import Drafting

    cache = ReplyCache(Path(out) / split / "lmm_cache.sqlite")
    loop = asyncio.new_event_loop()  # one loop for the whole run: the client's pool and semaphore live on it

    async def make() -> Drafting:
        return Drafting(lmm, cache)

    drafting = loop.run_until_complete(make())
    drafting.loop = loop
    signature = "lmm:" + json.dumps({"models": {t: sorted(e.model for e in lmm.pool(t))
                                                for t in ("holistic", "instance", "group", "merge")}, **lmm.sampling(),
                                     "prompts": {n: t.sha256 for n, t in drafting.templates.items()}}, sort_keys=True)
    try:
        summary = _run(out, split, progress, drafting, signature)
        summary.stats["requests_sent"] = sum(sum(c.state.sent.values()) for c in drafting.distinct_clients())
        summary.stats["cache_hits"] = cache.hits
        summary.stats["prompt_tokens"] = drafting.tokens["prompt"]
        summary.stats["completion_tokens"] = drafting.tokens["completion"]
        return summary
    finally:
        loop.run_until_complete(drafting.aclose())
        loop.close()
        cache.close()


def _run(out: Path, split: str, progress: bool, drafting, signature: str) -> DraftSummary:
    plans_dir = Path(out) / split / "plans"
    plans = read_manifest(plans_dir)
    if not plans or not plans.get("complete"):
        raise PlansNotReady(f"{plans_dir}: no finished plans; run `geopixeld plan` for split {split!r} first")
    vocab = vocabulary_for(SourceConfig.model_validate(plans["config"]["source"]))
    rec_dir = Path(out) / split / "records"
    rec_dir.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(rec_dir) or {"kind": "geopixeld-records", "schema_version": GCG_SCHEMA_VERSION,
                                         "shards": {}}
    summary = DraftSummary(rec_dir)
    for name in tqdm(sorted(plans["shards"]), desc=f"draft {split}", unit="shard", disable=not progress):
        rec_name = name.replace("plans-", "records-")
        entry = manifest["shards"].get(rec_name)
        summary.stats["shards"] += 1
        if (entry and entry["plan_sha256"] == plans["shards"][name]["sha256"] and entry.get("drafter") == signature
                and finished(rec_dir, manifest, rec_name)):
            summary.stats["skipped"] += 1
            summary.stats.update(entry["stats"])
            continue
        shard_plans = [row_to_plan(r) for r in pq.read_table(plans_dir / name).to_pylist()]
        if drafting is None:
            rows = [template_record(p, vocab) for p in shard_plans]
        else:
            from .lmm_draft import draft_plans

            rows = drafting.loop.run_until_complete(draft_plans(shard_plans, Path(out) / split, drafting))
        stats = Counter(records=len(rows), ok=sum(r["status"] == "ok" for r in rows),
                        failed=sum(r["status"] != "ok" for r in rows),
                        phrases=sum(len(r["phrases"]) for r in rows),
                        instance_phrases=sum(p["kind"] == "instance" for r in rows for p in r["phrases"]),
                        group_phrases=sum(p["kind"] == "group" for r in rows for p in r["phrases"]))
        sha = write_table(pa.Table.from_pylist(rows, schema=GCG_SCHEMA), rec_dir / rec_name)
        manifest["shards"][rec_name] = {"sha256": sha, "plan_sha256": plans["shards"][name]["sha256"], "drafter": signature,
                                        "rows": len(rows), "stats": dict(stats)}
        write_manifest(rec_dir, manifest)
        summary.stats.update(stats)
    manifest["complete"] = True
    manifest["rows"] = sum(s["rows"] for s in manifest["shards"].values())
    write_manifest(rec_dir, manifest)
    return summary


def export_split(out: Path, split: str, dest: Path, prefix: str = "data/GeoPixelD") -> Path:
    """Write the grounded records of a split in the released GeoPixelD layout."""
    from . import masks
    from .export_geopixeld import released_record, write_released

    rec_dir = Path(out) / split / "records"
    manifest = read_manifest(rec_dir)
    if not manifest or not manifest.get("complete"):
        raise PlansNotReady(f"{rec_dir}: no finished records; run `geopixeld draft` for split {split!r} first")
    items = []
    for name in sorted(manifest["shards"]):
        for r in pq.read_table(rec_dir / name).to_pylist():
            if r["status"] != "ok":
                continue
            phrase_masks = [masks.decode(p["rle"]) for p in r["phrases"]]
            index, per_patch = released_record(len(items), r["patch_id"], r["description"], phrase_masks, prefix, split)
            png = Path(out) / split / r["image_path"] if r["image_path"] else None
            items.append((index, per_patch, png))
    return write_released(Path(dest), split, items)

