"""Grounded-conversation (GCG) records: the typed record the drafting stage writes, and its Parquet schema (version 4).

One row per patch: the merged description with `<p> tag </p> [SEG]` phrases, each phrase's character span,
tier and mask, the plan's georeference (so a record needs no plan to be released), the tier texts it was merged
from, what was dropped and why, the failed verification checks, and the provenance of the text (drafter, model, sampling, the template hashes and
the rendered prompt of every request).

`GCGRecord.to_row()` and `GCGRecord.from_row(row)` are the one row codec, as `plan_to_row` / `row_to_plan` are for
plans. `from_row` also reads rows of versions 1 to 3 (phrases' `kind` read as `tier`, no georeference before 3,
not verified before 4), so records and predictions written before stay readable; rows are always written as the
current version.

Version history (docs/gcg-schema.md): 1 -> 2 added `provenance.prompts`; 2 -> 3 renamed phrases' `kind` to
`tier` (the word the plan and dataset schemas use) and added `source_image`, `window`, `crs`, `transform`;
3 -> 4 added `checks` (null: not verified; else one entry per failed check, empty when every check passed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Literal

import pyarrow as pa

from pipeline.contracts.plan_schema import RLE
from pipeline.contracts.records import Georef, PatchPlan, Window

GCG_SCHEMA_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)  # what `GCGRecord.from_row` reads

Tier = Literal["instance", "group"]

# A grounded phrase's fields, defined once: the GCG phrase is all of them; the dataset schema builds its phrase
# (span, tier, mask id) and its mask (tier, category, members, RLE) from them.
PHRASE_FIELDS: dict[str, pa.Field] = {f.name: f for f in (
    pa.field("tag", pa.string()), pa.field("start", pa.int32()), pa.field("end", pa.int32()),
    pa.field("tier", pa.string()), pa.field("category", pa.string()), pa.field("object_ids", pa.list_(pa.int64())),
    pa.field("rle", RLE),
)}
PHRASE = pa.struct(list(PHRASE_FIELDS.values()))
TEXT = pa.struct([("tag", pa.string()), ("text", pa.string())])
DROPPED = pa.struct([("tag", pa.string()), ("reason", pa.string())])
# one LMM request a record's text came from: its tier, the tag it was about ("" for holistic, merge and the
# per-patch instance request), the rendered prompt, and the SHA-256 of the whole request (model, messages with
# the image bytes, response format, sampling: the reply cache's key)
PROMPT = pa.struct([("tier", pa.string()), ("tag", pa.string()), ("text", pa.string()),
                    ("request_sha256", pa.string())])
FAILURE = pa.struct([("tier", pa.string()), ("tag", pa.string()), ("reason", pa.string()), ("raw", pa.string())])
# a failed verification check (pipeline/verification): the tier text (holistic, instance, group, merge), the tag
# ("" for holistic and merge), the check's name and what it found against the plan
CHECK = pa.struct([("tier", pa.string()), ("tag", pa.string()), ("check", pa.string()), ("detail", pa.string())])
PROVENANCE = pa.struct([
    ("drafter", pa.string()),  # "template" (offline, no model) or "lmm"
    ("drafter_version", pa.string()),
    ("model", pa.string()),  # served model name; null for the template drafter
    ("sampling", pa.string()),  # JSON of the sampling settings
    ("prompt_hashes", pa.list_(TEXT)),  # (tier, sha256 of the prompt template)
    ("prompts", pa.list_(PROMPT)),  # every request made, in order; empty for the template drafter
    ("plan_config_hash", pa.string()),
])

GEOREF_COLUMNS = ("source_image", "window", "crs", "transform")  # added in version 3, typed as in the plan schema

GCG_SCHEMA = pa.schema(
    [
        ("schema_version", pa.int16()),
        ("patch_id", pa.string()),
        ("split", pa.string()),
        ("image_path", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("source_image", pa.string()),  # the plan's source image; null in predictions and version 1-2 rows
        ("window", pa.list_(pa.int32(), 4)),  # x0, y0, x1, y1 in source pixels, end exclusive
        ("crs", pa.string()),
        ("transform", pa.list_(pa.float64(), 6)),
        ("description", pa.string()),
        ("phrases", pa.list_(PHRASE)),
        ("holistic", pa.string()),
        ("instance_texts", pa.list_(TEXT)),
        ("group_texts", pa.list_(TEXT)),
        ("dropped", pa.list_(DROPPED)),
        ("failures", pa.list_(FAILURE)),  # LMM replies refused (raw text kept, cut at 2,000 characters)
        ("checks", pa.list_(CHECK)),  # failed verification checks; null until verified (version 4)
        ("status", pa.string()),  # "ok" or "failed" (then `error` says why; description may be null)
        ("error", pa.string()),
        ("provenance", PROVENANCE),
        ("curation_status", pa.string()),  # "pending" until curation decides
    ],
    metadata={"geopixeld.kind": "gcg", "geopixeld.schema_version": str(GCG_SCHEMA_VERSION)},
)


def _rle(r: dict | None) -> dict | None:
    return None if r is None else {"size": list(r["size"]), "counts": r["counts"]}


def _flat(cls, r: dict):
    """A dataclass of plain fields from its row struct."""
    return cls(**{f.name: r[f.name] for f in fields(cls)})


@dataclass
class Phrase:
    """A grounded phrase: where its tag is in the description and the mask it resolves to."""

    tag: str
    start: int  # character span of the tag inside the description
    end: int
    tier: Tier | None  # None where nothing says (a model's predicted phrase)
    category: str | None
    object_ids: list[int]  # the instance, or the group's members
    rle: dict | None  # COCO RLE of the instance, or of the group's union

    def to_row(self) -> dict:
        return {"tag": self.tag, "start": self.start, "end": self.end, "tier": self.tier, "category": self.category,
                "object_ids": list(self.object_ids), "rle": _rle(self.rle)}

    @classmethod
    def from_row(cls, r: dict, version: int = GCG_SCHEMA_VERSION) -> "Phrase":
        return cls(r["tag"], r["start"], r["end"], r["tier"] if version >= 3 else r["kind"], r["category"],
                   list(r["object_ids"] or []), _rle(r["rle"]))


@dataclass
class TaggedText:
    """A tier text (`instance_texts`, `group_texts`), or a template's hash (`provenance.prompt_hashes`)."""

    tag: str
    text: str


@dataclass
class Dropped:
    """A planned instance or group left out of the description."""

    tag: str
    reason: str


@dataclass
class Failure:
    """An LMM reply that was refused, its raw text kept (cut at 2,000 characters)."""

    tier: str
    tag: str
    reason: str
    raw: str


@dataclass
class Prompt:
    """One request the text came from: tier, tag, the rendered prompt, the SHA-256 of the request as sent."""

    tier: str
    tag: str
    text: str
    request_sha256: str | None


@dataclass
class Provenance:
    """How the text was made."""

    drafter: str  # "template", "lmm", or "geopixel" for a model's predictions
    drafter_version: str | None = None
    model: str | None = None
    sampling: str | None = None  # JSON
    prompt_hashes: list[TaggedText] = field(default_factory=list)
    prompts: list[Prompt] = field(default_factory=list)
    plan_config_hash: str | None = None

    def to_row(self) -> dict:
        return asdict(self)

    @classmethod
    def from_row(cls, r: dict) -> "Provenance":
        return cls(r["drafter"], r.get("drafter_version"), r.get("model"), r.get("sampling"),
                   [_flat(TaggedText, t) for t in r.get("prompt_hashes") or []],
                   [_flat(Prompt, p) for p in r.get("prompts") or []],  # absent before version 2
                   r.get("plan_config_hash"))


@dataclass(frozen=True)
class Check:
    """A verification check a text failed: which text (tier, tag), which check, and what it found."""

    tier: str
    tag: str
    check: str
    detail: str


@dataclass
class GCGRecord:
    """One patch's grounded description. Built failed and empty; the drafter fills what it made."""

    patch_id: str
    split: str
    image_path: str | None  # patch PNG, relative to OUT/<split>/
    width: int
    height: int
    source_image: str | None = None  # the plan's georeference; None in predictions and records before version 3
    window: Window | None = None
    georef: Georef | None = None
    description: str | None = None
    phrases: list[Phrase] = field(default_factory=list)
    holistic: str | None = None
    instance_texts: list[TaggedText] = field(default_factory=list)
    group_texts: list[TaggedText] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    checks: list[Check] | None = None  # None: not verified; []: every check passed
    status: str = "failed"  # "ok": every phrase resolves to its mask
    error: str | None = None
    provenance: Provenance | None = None
    curation_status: str = "pending"

    @property
    def released(self) -> bool:
        """What the release keeps: grounded (`ok`) and not rejected by a curator."""
        return self.status == "ok" and self.curation_status != "rejected"

    @classmethod
    def for_plan(cls, plan: PatchPlan, provenance: Provenance, **values) -> "GCGRecord":
        """A record of a plan: its identity and georeference, `provenance` with the plan's config hash."""
        return cls(plan.patch_id, plan.split, plan.image_path, plan.width, plan.height, plan.source_image,
                   plan.window, plan.georef, provenance=replace(provenance, plan_config_hash=plan.config_hash), **values)

    def to_row(self) -> dict:
        """The row in GCG_SCHEMA layout (always the current version)."""
        w, g = self.window, self.georef
        return {
            "schema_version": GCG_SCHEMA_VERSION, "patch_id": self.patch_id, "split": self.split,
            "image_path": self.image_path, "width": self.width, "height": self.height,
            "source_image": self.source_image, "window": [w.x0, w.y0, w.x1, w.y1] if w else None,
            "crs": g.crs if g else None, "transform": list(g.transform) if g and g.transform else None,
            "description": self.description, "phrases": [p.to_row() for p in self.phrases], "holistic": self.holistic,
            "instance_texts": [asdict(t) for t in self.instance_texts],
            "group_texts": [asdict(t) for t in self.group_texts],
            "dropped": [asdict(d) for d in self.dropped], "failures": [asdict(f) for f in self.failures],
            "checks": None if self.checks is None else [asdict(c) for c in self.checks],
            "status": self.status, "error": self.error,
            "provenance": self.provenance.to_row() if self.provenance else None,
            "curation_status": self.curation_status,
        }

    @classmethod
    def from_row(cls, r: dict) -> "GCGRecord":
        """Inverse of `to_row`; also reads rows of the versions before (READABLE_VERSIONS), refuses others."""
        version = r.get("schema_version")
        if version not in READABLE_VERSIONS:
            raise ValueError(f"GCG row {r.get('patch_id')!r} has schema version {version}; this code reads "
                             f"{', '.join(map(str, READABLE_VERSIONS))}")
        geo = version >= 3
        crs, transform = (r["crs"], r["transform"]) if geo else (None, None)
        return cls(
            r["patch_id"], r["split"], r["image_path"], r["width"], r["height"],
            source_image=r["source_image"] if geo else None,
            window=Window(*r["window"]) if geo and r["window"] is not None else None,
            georef=Georef(crs, tuple(transform) if transform is not None else None) if (crs or transform) else None,
            description=r["description"], phrases=[Phrase.from_row(p, version) for p in r["phrases"] or []],
            holistic=r["holistic"], instance_texts=[_flat(TaggedText, t) for t in r["instance_texts"] or []],
            group_texts=[_flat(TaggedText, t) for t in r["group_texts"] or []],
            dropped=[_flat(Dropped, d) for d in r["dropped"] or []],
            failures=[_flat(Failure, f) for f in r["failures"] or []],
            checks=[_flat(Check, c) for c in r["checks"]] if version >= 4 and r["checks"] is not None else None,
            status=r["status"], error=r["error"],
            provenance=Provenance.from_row(r["provenance"]) if r["provenance"] else None,
            curation_status=r["curation_status"],
        )


def tagged_texts(texts: dict[str, str]) -> list[TaggedText]:
    """{tag: text} -> the `instance_texts` / `group_texts` of a record."""
    return [TaggedText(k, v) for k, v in texts.items()]


def records_to_table(records: list[GCGRecord]) -> pa.Table:
    return pa.Table.from_pylist([r.to_row() for r in records], schema=GCG_SCHEMA)


def records_from_table(table: pa.Table) -> list[GCGRecord]:
    """Every row of a table of GCG records (any readable version)."""
    return [GCGRecord.from_row(r) for r in table.to_pylist()]
