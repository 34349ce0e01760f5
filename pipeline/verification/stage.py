"""The verify stage: every drafted text checked against its plan's facts, the verdicts written into the records.

Between draft and curation. For each record shard (and the plan shard it was drafted from) every tier text and
the merged description go through `checks.verify_texts`; the failures become the record's `checks` (one entry
per failed check, empty when all pass), whatever the policy:

    keep   the texts stay as drafted
    flag   the texts stay; flagged patches go to curators (the build stages sheets of them in every split, and
           `geopixeld curate export --order risk` puts the riskiest first)
    drop   a failed instance or group sentence is dropped (its tag goes to `dropped`, `verification: <check>`)
           and the description is assembled again from the texts that passed (a failed merge is replaced by the
           assembly; a failed holistic text is left out of it); what remains is checked again

Shards are rewritten in place, each atomically with its manifest entry, and the records manifest remembers the
settings (`verification`), so a rerun with the same settings verifies nothing again and drafting still finds
its shards finished. Under `drop` the LMM drafter has already asked once more for each failing tier text
(`drafting_screen`); the optional LMM judge is not part of this stage yet.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Literal

import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from annotations.merge import assembled
from pipeline.contracts.gcg_schema import Check, Dropped, GCGRecord, records_from_table, records_to_table
from pipeline.contracts.grounding import ground, targets_of
from pipeline.contracts.layout import drafted_records, plans_dir, records_dir
from pipeline.contracts.records import PatchPlan
from pipeline.contracts.shards import PlansNotReady, RecordsNotReady, ShardManifest, require_complete, require_intact, write_table
from pipeline.drafting.stage import plan_shard_of, read_plan_shard, record_stats
from pipeline.verification.checks import verify_texts
from pipeline.verification.settings import VerifySettings

Policy = Literal["keep", "flag", "drop"]
VERIFY_VERSION = "1"


class VerificationConfig(BaseModel):
    """How a build verifies its drafted texts (`verification` in the build parameters)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Verify every drafted text against its plan (the card reports the flags).")
    policy: Policy = Field("flag", description="keep: record the failed checks only; flag: also send flagged patches "
                           "to curators; drop: drop failed sentences and assemble the description from the rest.")
    settings: VerifySettings = Field(VerifySettings(), description="The checks and their vocabularies, tolerances "
                                     "and bounds (docs/verification.md).")
    judge: bool = Field(False, description="Also ask the LMM, once per kept instance and group sentence, whether it "
                        "describes its objects (the set-of-marks image, or a crop around the group); a no is the check "
                        "`judge`. LMM drafting only (it runs in the drafting stage, through its servers and cache).")

    def fingerprint(self) -> str:
        blob = json.dumps({"version": VERIFY_VERSION, "policy": self.policy, "settings": self.settings.model_dump(mode="json")},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def screen_text(plan: PatchPlan, tier: str, tag: str, text: str, settings: VerifySettings) -> list[str]:
    """The checks one instance or group text fails (the LMM drafter's screen under the `drop` policy: a failing
    text is asked once more with new seeds before it is dropped)."""
    inst, grp = ({tag: text}, {}) if tier == "instance" else ({}, {tag: text})
    return sorted({f.check for f in verify_texts(plan, None, inst, grp, None, settings) if (f.tier, f.tag) == (tier, tag)})


def drafting_screen(config: VerificationConfig):
    """(screen, its id) for `LMMSettings` when the policy drops failed sentences, else (None, None)."""
    if not (config.enabled and config.policy == "drop"):
        return None, None
    return partial(screen_text, settings=config.settings), config.fingerprint()


def _texts(record: GCGRecord) -> tuple[dict[str, str], dict[str, str]]:
    return {t.tag: t.text for t in record.instance_texts}, {t.tag: t.text for t in record.group_texts}


def record_checks(record: GCGRecord, plan: PatchPlan, settings: VerifySettings) -> list[Check]:
    """The failed checks of one record's texts (pure). A failed record's description is not checked."""
    inst, grp = _texts(record)
    found = verify_texts(plan, record.holistic, inst, grp, record.description if record.status == "ok" else None,
                         settings)
    return sorted({Check(f.tier, f.tag, f.check, f.detail) for f in found}, key=lambda c: (c.tier, c.tag, c.check, c.detail))


def _assemble(record: GCGRecord, plan: PatchPlan, holistic: str | None, inst: dict[str, str],
              grp: dict[str, str]) -> str:
    """The description from the texts kept, in the plan's order (the deterministic assembly of the merge)."""
    order = [o.tag for o in sorted(plan.instances, key=lambda o: o.mark)] + [g.tag for g in plan.groups]
    texts = {**inst, **grp}
    tagged = [(t, texts[t]) for t in order if t in texts]
    if record.provenance and record.provenance.drafter == "template":  # its sentences carry their own markup
        return " ".join(p for p in [holistic or "", *(s for _, s in tagged)] if p.strip())
    return assembled(holistic or "", tagged)


def drop_failed(record: GCGRecord, plan: PatchPlan, checks: list[Check]) -> GCGRecord:
    """The record with every failed sentence dropped and its description assembled from the rest (pure)."""
    if record.status != "ok" or not checks:
        return record
    bad = {(c.tier, c.tag) for c in checks}
    why = {}
    for c in checks:
        why.setdefault((c.tier, c.tag), c.check)
    inst, grp = _texts(record)
    gone = [t for t in [*inst, *grp] if ("instance", t) in bad or ("group", t) in bad]
    if not gone and ("merge", "") not in bad and ("holistic", "") not in bad:
        return record
    keep_inst = {t: s for t, s in inst.items() if t not in gone}
    keep_grp = {t: s for t, s in grp.items() if t not in gone}
    holistic = None if ("holistic", "") in bad else record.holistic
    description = _assemble(record, plan, holistic, keep_inst, keep_grp)
    targets = {k: v for k, v in targets_of(plan).items() if k in {*keep_inst, *keep_grp}}
    g = ground(description, targets)
    dropped = record.dropped + [Dropped(t, f"verification: {why.get(('instance', t)) or why.get(('group', t))}")
                                for t in gone]
    if not g.ok or g.missing or not description.strip():
        return replace(record, dropped=dropped, status="failed", description=None, phrases=[],
                       error="nothing left after dropping the sentences that failed verification"
                       if not description.strip() else "; ".join(g.errors + g.missing))
    return replace(record, description=description, phrases=g.phrases, dropped=dropped)


def verify_record(record: GCGRecord, plan: PatchPlan, config: VerificationConfig) -> GCGRecord:
    """One record with its `checks`, after the policy (a drop is checked again, so `checks` says what remains)."""
    judged = {c for c in record.checks or [] if c.check == "judge"}  # the LMM judge's, written by the drafter
    checks = sorted(set(record_checks(record, plan, config.settings)) | judged,
                    key=lambda c: (c.tier, c.tag, c.check, c.detail))
    if config.policy == "drop" and checks:
        record = drop_failed(record, plan, checks)
        remaining = record_checks(record, plan, config.settings) if record.status == "ok" else []
        checks = sorted(set(remaining) | {c for c in checks if c.tier in ("instance", "group")},
                        key=lambda c: (c.tier, c.tag, c.check, c.detail))  # what was dropped stays on record
    return replace(record, checks=checks)


def check_stats(records: list[GCGRecord]) -> Counter:
    """Counts of a shard: records verified and flagged, and failed checks per check and per tier."""
    c = Counter(verified=len(records), flagged=sum(bool(r.checks) for r in records))
    for r in records:
        for ch in r.checks or []:
            c[f"check: {ch.check}"] += 1
            c[f"tier: {ch.tier}"] += 1
        c["dropped by verification"] += sum(d.reason.startswith("verification: ") for d in r.dropped)
    return c


@dataclass(frozen=True)
class Verifier:
    """Verification inside the drafting stage (`open_draft(verify=...)`): each shard's records get their checks
    before the shard is first written, so a build reads and writes its records once; the verify stage then finds
    those shards verified with these settings and only verifies what was drafted without it."""

    config: VerificationConfig

    def records(self, records: list[GCGRecord], plans: list[PatchPlan]) -> list[GCGRecord]:
        by_id = {p.patch_id: p for p in plans}
        return [verify_record(r, by_id[r.patch_id], self.config) for r in records]

    def fingerprint(self) -> str:
        return self.config.fingerprint()

    def stats(self, records: list[GCGRecord]) -> dict:
        return dict(check_stats(records))


def draft_verifier(config: VerificationConfig | None) -> Verifier | None:
    """The verifier drafting runs when verification is on, else None."""
    return Verifier(config) if config is not None and config.enabled else None


@dataclass
class VerifySummary:
    records_dir: Path
    policy: str
    stats: Counter = field(default_factory=Counter)
    shards: int = 0
    skipped: int = 0

    def table(self) -> str:
        s = self.stats
        lines = [f"Verified records in {self.records_dir} (policy {self.policy})",
                 f"  shards        {self.shards} ({self.skipped} already verified with these settings, skipped)",
                 f"  records       {s['verified']} ({s['flagged']} with failed checks)"]
        checks = sorted((k.split(": ", 1)[1], v) for k, v in s.items() if k.startswith("check: "))
        tiers = sorted((k.split(": ", 1)[1], v) for k, v in s.items() if k.startswith("tier: "))
        lines.append("  by check      " + (", ".join(f"{k} {v}" for k, v in checks) or "none failed"))
        if tiers:
            lines.append("  by tier       " + ", ".join(f"{k} {v}" for k, v in tiers))
        if s["dropped by verification"]:
            lines.append(f"  dropped       {s['dropped by verification']} sentences")
        return "\n".join(lines)


def verify_shard(name: str, out: Path, split: str, plans: dict, records: dict, config: VerificationConfig) -> tuple[str, dict]:
    """Verify one record shard against its plan shard and write it back atomically; (name, manifest entry)."""
    rec_dir = records_dir(out, split)
    rec_path = require_intact(rec_dir, records, name, RecordsNotReady,
                              f"run `geopixeld draft` for split {split!r} again (it redrafts changed shards)")
    plan_name = plan_shard_of(name)
    by_id = {p.patch_id: p for p in read_plan_shard(out, split, plans, plan_name)}
    recs = records_from_table(pq.read_table(rec_path))
    missing = [r.patch_id for r in recs if r.patch_id not in by_id]
    if missing:
        raise RecordsNotReady(f"{rec_path}: record {missing[0]!r} has no plan in {plans_dir(out, split) / plan_name}; "
                              f"draft split {split!r} again")
    verifier = Verifier(config)  # what drafting runs on a shard as it writes it
    verified = verifier.records(recs, list(by_id.values()))
    sha = write_table(records_to_table(verified), rec_dir / name)
    stats = {**records["shards"][name].get("stats", {}), **record_stats(verified)}
    entry = {**records["shards"][name], "sha256": sha, "stats": stats, "verified": verifier.fingerprint(),
             "check_stats": verifier.stats(verified)}
    return name, entry


def verify_batch(names: list[str], **kw) -> list[tuple[str, dict]]:
    return [verify_shard(n, **kw) for n in names]


@dataclass
class VerifyJob:
    """One split's verification for `pipeline.driver.run_stage`; the records manifest is updated in this thread."""

    out: Path
    split: str
    config: VerificationConfig
    plans: dict
    manifest: ShardManifest
    in_process = False

    @property
    def todo(self) -> list[str]:
        fp = self.config.fingerprint()
        return [n for n in sorted(self.manifest.shards) if self.manifest.shards[n].get("verified") != fp]

    @property
    def work(self):
        return partial(verify_batch, out=self.out, split=self.split, plans=self.plans, records=self.manifest.data,
                       config=self.config)

    def record(self, result: tuple[str, dict]) -> None:
        name, entry = result
        self.manifest.record(name, entry)

    def finish(self) -> VerifySummary:
        summary = VerifySummary(self.manifest.folder, self.config.policy, shards=len(self.manifest.shards))
        for entry in self.manifest.shards.values():
            summary.stats.update(entry.get("check_stats", {}))
        self.manifest.data["verification"] = {"fingerprint": self.config.fingerprint(), "policy": self.config.policy}
        self.manifest.data["rows"] = sum(e.get("rows", 0) for e in self.manifest.shards.values())
        self.manifest.save()
        return summary


def prepare_verify(out: Path, split: str, config: VerificationConfig | None = None) -> VerifyJob:
    """The split's drafted records (finished) and their plans, ready to verify."""
    config = config or VerificationConfig()
    folder, records = drafted_records(out, split)
    plans = require_complete(plans_dir(out, split), PlansNotReady, f"run `geopixeld plan` for split {split!r} first")
    manifest = ShardManifest(folder, records)
    manifest.data.pop("verification", None)  # unverified until every shard is
    manifest.save()
    return VerifyJob(Path(out), split, config, plans, manifest)


def run_verify(out: Path, split: str, config: VerificationConfig | None = None, progress: bool = True) -> VerifySummary:
    """Verify every record shard of a split in this process (the CLI; the flow runs the same job on its runner)."""
    from tqdm import tqdm

    from pipeline.driver import run_stage

    job = prepare_verify(out, split, config)
    todo = job.todo
    with tqdm(total=len(todo), desc=f"verify {split}", unit="shard", disable=not progress) as bar:
        summary = run_stage(job, progress=bar.update)
    summary.skipped = summary.shards - len(todo)
    return summary
