"""The curated records of a split: the drafted records with every decision of the ledger applied.

OUT/<split>/curated/records-NNNNN.parquet (one per record shard, the same GCG schema) and `_manifest.json`,
which names the record and ledger shards it was computed from, the policy, the summary and the disagreements.
The shards are a pure function of (records, ledger, policy): recomputing writes only shards whose bytes change.
A decision counts only while the record still has the content it was made on (its content hash); decisions on
content that has since been drafted again are kept in the ledger but no longer apply.
"""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.contracts.gcg_schema import GCG_SCHEMA, GCG_SCHEMA_VERSION, records_from_table, records_to_table
from pipeline.contracts.fileio import atomic_write_bytes
from pipeline.contracts.shards import RecordsNotReady, ShardManifest, read_manifest, write_manifest
from pipeline.curation import ledger
from pipeline.curation.content import CurationError, apply, content_hash
from pipeline.contracts.layout import curated_dir, drafted_records
from pipeline.curation.policies import POLICIES, Conflict, resolve

DEFAULT_POLICY = "latest"


@dataclass
class CurationSummary:
    """Where curation of a split stands. Patch counts are over grounded records (status ok), the ones a release
    needs decided; phrase counts over those not rejected (accepting a patch accepts its undecided phrases)."""

    split: str
    patches: int = 0
    decided: int = 0  # accepted, rejected or flagged
    accepted_patches: int = 0
    rejected_patches: int = 0
    flagged: int = 0
    phrases_accepted: int = 0
    phrases_edited: int = 0
    phrases_rejected: int = 0
    complete: bool = False  # every patch decided
    needs_look: int = 0  # patches pending because curators disagree (policy third-look)
    conflicts: int = 0  # decisions on which curators disagree (reported under either policy)
    stale_decisions: int = 0  # ledger rows made on content that has changed since (no longer applied)
    policy: str = DEFAULT_POLICY

    @classmethod
    def from_dict(cls, d: dict) -> "CurationSummary":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def table(self) -> str:
        return (f"Curation of split {self.split!r} (policy {self.policy})\n"
                f"  patches   {self.decided} of {self.patches} decided: {self.accepted_patches} accepted, "
                f"{self.rejected_patches} rejected, {self.flagged} flagged"
                + (f"; {self.needs_look} need a third look" if self.needs_look else "") + "\n"
                f"  phrases   {self.phrases_accepted} accepted, {self.phrases_edited} edited, {self.phrases_rejected} rejected\n"
                f"  complete  {'yes' if self.complete else 'no'}"
                + (f"\n  {self.conflicts} disagreements between curators" if self.conflicts else "")
                + (f"\n  {self.stale_decisions} decisions were made on content drafted again since (not applied)"
                   if self.stale_decisions else ""))


@dataclass
class Computation:
    summary: CurationSummary
    statuses: dict = field(default_factory=dict)  # patch id -> curation status
    conflicts: list[Conflict] = field(default_factory=list)
    sources: dict = field(default_factory=dict)
    written: int = 0
    unchanged: int = 0
    folder: Path | None = None


def _parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")  # as pipeline.contracts.shards.write_table
    return buf.getvalue()


def stored_policy(out: Path, split: str) -> str:
    m = read_manifest(curated_dir(out, split))
    return (m or {}).get("policy") or DEFAULT_POLICY


def _walk(out: Path, split: str, policy: str, on_shard) -> Computation:
    """Apply the ledger to every record shard; `on_shard(name, records, source_sha)` receives each curated shard."""
    if policy not in POLICIES:
        raise ValueError(f"curation policy must be one of {', '.join(POLICIES)}, not {policy!r}")
    rec_dir, rec_manifest = drafted_records(out, split)
    rows, ledger_shas = ledger.read(out, split)
    by_patch: dict[str, list[dict]] = {}
    for r in rows:
        by_patch.setdefault(r["patch_id"], []).append(r)
    c = Computation(CurationSummary(split, policy=policy))
    c.sources = {"records": {n: e["sha256"] for n, e in sorted(rec_manifest["shards"].items())}, "ledger": ledger_shas}
    counts: Counter = Counter()
    seen = set()
    for name in sorted(rec_manifest["shards"]):
        curated = []
        for rec in records_from_table(pq.read_table(rec_dir / name)):
            pid = rec.patch_id
            seen.add(pid)
            h = content_hash(rec)
            mine = [r for r in by_patch.get(pid, []) if r["content_sha256"] == h]
            counts["stale"] += len(by_patch.get(pid, [])) - len(mine)
            res, conflicts = resolve(pid, mine, policy)
            try:
                new, phrase_counts = apply(rec, res)
            except CurationError as exc:
                raise CurationError(f"{rec_dir / name}: {exc}") from exc
            curated.append(new)
            c.conflicts += conflicts
            c.statuses[pid] = new.curation_status
            if rec.status == "ok":
                counts["patches"] += 1
                counts[new.curation_status] += 1
                counts["needs_look"] += res.needs_look
                counts.update(phrase_counts)
        on_shard(name, curated, rec_manifest["shards"][name]["sha256"])
    counts["stale"] += sum(len(v) for pid, v in by_patch.items() if pid not in seen)
    s = c.summary
    s.patches = counts["patches"]
    s.accepted_patches, s.rejected_patches, s.flagged = counts["accepted"], counts["rejected"], counts["flagged"]
    s.decided = s.accepted_patches + s.rejected_patches + s.flagged
    s.phrases_accepted, s.phrases_edited = counts["phrases_accepted"], counts["phrases_edited"]
    s.phrases_rejected = counts["phrases_rejected"]
    s.needs_look, s.conflicts, s.stale_decisions = counts["needs_look"], len(c.conflicts), counts["stale"]
    s.complete = s.decided == s.patches
    return c


def compute(out: Path, split: str, policy: str | None = None, tables: dict | None = None) -> Computation:
    """The curation of a split as it stands, without writing anything (`tables`, when given, receives the shards)."""
    policy = policy or stored_policy(out, split)

    def keep(name, records, _sha):
        if tables is not None:
            tables[name] = records_to_table(records)

    return _walk(Path(out), split, policy, keep)


def rebuild(out: Path, split: str, policy: str | None = None) -> Computation:
    """Write the curated shards and manifest of a split from its records and ledger (only what changed)."""
    out = Path(out)
    policy = policy or stored_policy(out, split)
    folder = curated_dir(out, split)
    folder.mkdir(parents=True, exist_ok=True)
    old = read_manifest(folder) or {}
    entries, counters = {}, Counter()

    def write(name, records, source_sha):
        data = _parquet_bytes(records_to_table(records))
        sha = hashlib.sha256(data).hexdigest()
        if old.get("shards", {}).get(name, {}).get("sha256") == sha and ShardManifest(folder, old).finished(name):
            counters["unchanged"] += 1
        else:
            atomic_write_bytes(folder / name, data)
            counters["written"] += 1
        entries[name] = {"sha256": sha, "rows": len(records), "records_sha256": source_sha}

    c = _walk(out, split, policy, write)
    c.written, c.unchanged, c.folder = counters["written"], counters["unchanged"], folder
    manifest = {"kind": "geopixeld-curated", "schema_version": GCG_SCHEMA_VERSION, "complete": True, "policy": policy,
                "rows": sum(e["rows"] for e in entries.values()), "shards": entries, "sources": c.sources,
                "summary": asdict(c.summary), "conflicts": [asdict(x) for x in c.conflicts]}
    if manifest != old:
        write_manifest(folder, manifest)
    for name in set(old.get("shards", {})) - set(entries):  # record shards that no longer exist
        (folder / name).unlink(missing_ok=True)
    return c


def fresh(out: Path, split: str, policy: str | None) -> dict | None:
    """The curated manifest when it was computed from exactly the current records and ledger, else None."""
    m = read_manifest(curated_dir(out, split))
    if not m or not m.get("complete"):
        return None
    _, rec_manifest = drafted_records(out, split)
    now = {"records": {n: e["sha256"] for n, e in sorted(rec_manifest["shards"].items())},
           "ledger": ledger.shards(out, split)}
    if m.get("sources") != now or (policy and policy != m.get("policy")):
        return None
    folder = curated_dir(out, split)
    if not all(ShardManifest(folder, m).finished(n) for n in m["shards"]):
        return None
    return m


def curation_summary(out: Path, split: str, policy: str | None = None) -> CurationSummary:
    """Where curation of a split stands (read-only). For the dataset build: release `split` when `.complete`;
    the card counts `phrases_accepted`, `phrases_edited`, `phrases_rejected`."""
    out = Path(out)
    m = fresh(out, split, policy)
    if m:
        return CurationSummary.from_dict(m["summary"])
    return compute(out, split, policy).summary


def curated_records(out: Path, split: str, policy: str | None = None) -> pa.Table | None:
    """The curated GCG records of a split (all patches, `curation_status` set), or None when nobody has curated it."""
    out = Path(out)
    m = fresh(out, split, policy)
    if m:
        folder = curated_dir(out, split)
        return pa.concat_tables([pq.read_table(folder / n, schema=GCG_SCHEMA) for n in sorted(m["shards"])])
    if not ledger.shards(out, split):
        return None
    tables: dict = {}
    compute(out, split, policy, tables)
    return pa.concat_tables([tables[n] for n in sorted(tables)], promote_options="none")


__all__ = ["CurationSummary", "RecordsNotReady", "compute", "curated_records", "curation_summary", "rebuild"]
