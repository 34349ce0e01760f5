"""Grounded-conversation (GCG) records: the Parquet schema (version 2) of what the drafting stage writes.

One row per patch: the merged description with `<p> tag </p> [SEG]` phrases, each phrase's character span
and mask, the tier texts it was merged from, what was dropped and why, and the provenance of the text
(drafter, model, sampling, the template hashes and the rendered prompt of every request).

Version history (docs/gcg-schema.md): 1 -> 2 added `provenance.prompts`.
"""

from __future__ import annotations

import pyarrow as pa

from pipeline.contracts.plan_schema import RLE

GCG_SCHEMA_VERSION = 2

PHRASE = pa.struct([
    ("tag", pa.string()), ("start", pa.int32()), ("end", pa.int32()), ("kind", pa.string()),
    ("category", pa.string()), ("object_ids", pa.list_(pa.int64())), ("rle", RLE),
])
TEXT = pa.struct([("tag", pa.string()), ("text", pa.string())])
DROPPED = pa.struct([("tag", pa.string()), ("reason", pa.string())])
# one LMM request a record's text came from: its tier, the tag it was about ("" for holistic, merge and the
# per-patch instance request), the rendered prompt, and the SHA-256 of the whole request (model, messages with
# the image bytes, response format, sampling: the reply cache's key)
PROMPT = pa.struct([("tier", pa.string()), ("tag", pa.string()), ("text", pa.string()),
                    ("request_sha256", pa.string())])
FAILURE = pa.struct([("tier", pa.string()), ("tag", pa.string()), ("reason", pa.string()), ("raw", pa.string())])
PROVENANCE = pa.struct([
    ("drafter", pa.string()),  # "template" (offline, no model) or "lmm"
    ("drafter_version", pa.string()),
    ("model", pa.string()),  # served model name; null for the template drafter
    ("sampling", pa.string()),  # JSON of the sampling settings
    ("prompt_hashes", pa.list_(TEXT)),  # (tier, sha256 of the prompt template)
    ("prompts", pa.list_(PROMPT)),  # every request made, in order; empty for the template drafter
    ("plan_config_hash", pa.string()),
])

GCG_SCHEMA = pa.schema(
    [
        ("schema_version", pa.int16()),
        ("patch_id", pa.string()),
        ("split", pa.string()),
        ("image_path", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("description", pa.string()),
        ("phrases", pa.list_(PHRASE)),
        ("holistic", pa.string()),
        ("instance_texts", pa.list_(TEXT)),
        ("group_texts", pa.list_(TEXT)),
        ("dropped", pa.list_(DROPPED)),
        ("failures", pa.list_(FAILURE)),  # LMM replies refused (raw text kept, cut at 2,000 characters)
        ("status", pa.string()),  # "ok" or "failed" (then `error` says why; description may be null)
        ("error", pa.string()),
        ("provenance", PROVENANCE),
        ("curation_status", pa.string()),  # "pending" until curation decides
    ],
    metadata={"geopixeld.kind": "gcg", "geopixeld.schema_version": str(GCG_SCHEMA_VERSION)},
)


def new_record(plan, provenance: dict, **fields) -> dict:
    """A GCG row for a plan, every column present: failed and empty until `fields` say otherwise."""
    row = {
        "schema_version": GCG_SCHEMA_VERSION, "patch_id": plan.patch_id, "split": plan.split,
        "image_path": plan.image_path, "width": plan.width, "height": plan.height,
        "description": None, "phrases": [], "holistic": None, "instance_texts": [], "group_texts": [],
        "dropped": [], "failures": [], "status": "failed", "error": None,
        "provenance": {**provenance, "plan_config_hash": plan.config_hash}, "curation_status": "pending",
    }
    unknown = set(fields) - set(row)
    if unknown:
        raise KeyError(f"not GCG columns: {sorted(unknown)}")
    row.update(fields)
    return row


def tier_texts(texts: dict[str, str]) -> list[dict]:
    """{tag: text} -> the `instance_texts` / `group_texts` column layout."""
    return [{"tag": k, "text": v} for k, v in texts.items()]
