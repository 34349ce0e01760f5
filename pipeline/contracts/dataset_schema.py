"""The released dataset's Parquet schema (version 2; 1 -> 2 added `checks`): one row per grounded patch, self-describing.

Unlike the drafting records (`gcg_schema`), a dataset row is a released patch ready to use, with no failure
or LMM reply: the image (a path inside the dataset folder, or its bytes), the patch's place in its source
image and its georeference, the caption without markup, and one mask per `[SEG]` with its category, box and area
(phrases point at their masks by id). Documented in docs/dataset-schema.md, which a test keeps in sync with this
file.
"""

from __future__ import annotations

import pyarrow as pa

from pipeline.contracts.gcg_schema import CHECK, DROPPED, PHRASE_FIELDS, PROVENANCE, TEXT

DATASET_SCHEMA_VERSION = 2

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
_MASK_ID = pa.field("mask_id", pa.int32())
# a record's phrase split in two: its span and tier, pointing at its mask by id; the mask with its box and area
PHRASE_REF = pa.struct([PHRASE_FIELDS[n] for n in ("tag", "start", "end", "tier")] + [_MASK_ID])
MASK = pa.struct([_MASK_ID] + [PHRASE_FIELDS[n] for n in ("tier", "category", "object_ids")]
                 + [pa.field("bbox", pa.list_(pa.float64(), 4)), pa.field("area", pa.int64()), PHRASE_FIELDS["rle"]])

# column -> meaning; the order is the schema's order (docs/dataset-schema.md is generated from this table)
COLUMNS: list[tuple[str, pa.DataType, str]] = [
    ("schema_version", pa.int16(), "2"),
    ("patch_id", pa.string(), "`P<id>_<y0>_<y1>_<x0>_<x1>` as in GeoPixelD, or the image name when kept whole"),
    ("split", pa.string(), "the split the row belongs to"),
    ("image", IMAGE, "the patch PNG: `path` relative to the dataset folder (`images/<split>/<patch>.png`), "
                     "`bytes` filled when the build embeds images (`dataset.embed_images`)"),
    ("width", pa.int32(), "patch width in px"),
    ("height", pa.int32(), "patch height in px"),
    ("source_image", pa.string(), "the source image the patch was cut from"),
    ("window", pa.list_(pa.int32(), 4), "x0, y0, x1, y1 of the patch in source pixels (end exclusive)"),
    ("crs", pa.string(), "coordinate reference system (WKT) of a georeferenced source, else null"),
    ("transform", pa.list_(pa.float64(), 6), "affine transform a, b, c, d, e, f of the patch's pixels, else null"),
    ("description", pa.string(), "the grounded description; every phrase is `<p> tag </p> [SEG]`"),
    ("caption", pa.string(), "the description without the markup (what METEOR and CIDEr score)"),
    ("phrases", pa.list_(PHRASE_REF), "one per `[SEG]`, in caption order: `tag`, its character span `start`/`end` "
                                      "in `description`, `tier` (instance or group) and the `mask_id` it grounds to"),
    ("masks", pa.list_(MASK), "one per `[SEG]`, in caption order: `tier`, `category`, the source `object_ids` (one "
                              "instance, or a group's members), COCO `bbox` [x, y, w, h], `area` in px and the "
                              "COCO RLE (`size` [h, w], compressed `counts`); a group's mask is its members' union"),
    ("holistic", pa.string(), "the holistic text the description was merged from"),
    ("instance_texts", pa.list_(TEXT), "the instance-tier texts (tag, text)"),
    ("group_texts", pa.list_(TEXT), "the group-tier texts (tag, text)"),
    ("dropped", pa.list_(DROPPED), "planned instances or groups left out of the description, with the reason"),
    ("checks", pa.list_(CHECK), "the verification checks the texts failed against the plan (`tier`, `tag`, `check`, "
                                "`detail`; empty when all passed, null when the build did not verify), kept whatever "
                                "the verification policy"),
    ("provenance", PROVENANCE, "how the text was made: drafter (template, lmm or replay), model, sampling, prompts"),
    ("curation_status", pa.string(), "`pending`, or the curator's decision on the patch (`accepted`, `flagged`; "
                                     "rejected patches are left out); edited phrases carry the curated text"),
]

DATASET_SCHEMA = pa.schema(
    [(name, dtype) for name, dtype, _ in COLUMNS],
    metadata={"geopixeld.kind": "dataset", "geopixeld.schema_version": str(DATASET_SCHEMA_VERSION)},
)


def schema_reference() -> str:
    """The column table of docs/dataset-schema.md."""
    lines = ["| column | type | meaning |", "|---|---|---|"]
    for name, dtype, meaning in COLUMNS:
        lines.append(f"| `{name}` | {_type_name(dtype)} | {meaning} |")
    return "\n".join(lines)


def _type_name(t: pa.DataType) -> str:
    if pa.types.is_struct(t):
        return "struct<" + ", ".join(f.name for f in t) + ">"
    if pa.types.is_list(t) or pa.types.is_fixed_size_list(t):
        inner = t.value_type
        return "list<" + (("struct<" + ", ".join(f.name for f in inner) + ">") if pa.types.is_struct(inner) else str(inner)) + ">"
    return str(t)
