"""The Parquet schema of annotation plans (version 1), and conversion to and from `PatchPlan`.

One row per kept patch. Documented in docs/plan-schema.md; bump PLAN_SCHEMA_VERSION on any change and
keep readers able to refuse a version they do not know.
"""

from __future__ import annotations

import json

import pyarrow as pa

from pipeline.contracts.records import Georef, Group, Mark, PatchPlan, PlannedObject, Window

PLAN_SCHEMA_VERSION = 1

RLE = pa.struct([("size", pa.list_(pa.int32(), 2)), ("counts", pa.string())])
BBOX = pa.list_(pa.float32(), 4)

OBJECT = pa.struct(
    [
        ("object_id", pa.int64()),
        ("category_id", pa.int32()),
        ("category", pa.string()),
        ("rle", RLE),
        ("bbox", BBOX),
        ("area", pa.int64()),
        ("centroid", pa.list_(pa.float32(), 2)),
        ("position", pa.string()),
        ("size", pa.string()),
        ("area_fraction", pa.float32()),
        ("orientation", pa.string()),
        ("angle", pa.float32()),
        ("elongation", pa.float32()),
        ("truncated", pa.bool_()),
        ("tier", pa.string()),
        ("mark", pa.int32()),
        ("tag", pa.string()),
        ("group_id", pa.int32()),
        ("drop_reason", pa.string()),
    ]
)

GROUP = pa.struct(
    [
        ("group_id", pa.int32()),
        ("tag", pa.string()),
        ("category_id", pa.int32()),
        ("category", pa.string()),
        ("grid", pa.string()),
        ("cell", pa.string()),
        ("position", pa.string()),
        ("count", pa.int32()),
        ("quantity", pa.string()),
        ("member_ids", pa.list_(pa.int64())),
        ("rle", RLE),
        ("bbox", BBOX),
        ("area", pa.int64()),
    ]
)

MARK = pa.struct(
    [("number", pa.int32()), ("object_id", pa.int64()), ("x", pa.int32()), ("y", pa.int32()), ("size", pa.int32())]
)

PLAN_SCHEMA = pa.schema(
    [
        ("schema_version", pa.int16()),
        ("patch_id", pa.string()),
        ("split", pa.string()),
        ("source_image", pa.string()),
        ("source_image_id", pa.int64()),
        ("source_path", pa.string()),
        ("window", pa.list_(pa.int32(), 4)),  # x0, y0, x1, y1 in source pixels, end exclusive
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("image_path", pa.string()),
        ("som_path", pa.string()),
        ("crs", pa.string()),
        ("transform", pa.list_(pa.float64(), 6)),
        ("objects", pa.list_(OBJECT)),
        ("groups", pa.list_(GROUP)),
        ("marks", pa.list_(MARK)),
        ("config_hash", pa.string()),
    ],
    metadata={"geopixeld.kind": "plan", "geopixeld.schema_version": str(PLAN_SCHEMA_VERSION)},
)


def _obj_row(o: PlannedObject) -> dict:
    d = dict(o.__dict__)
    d["bbox"], d["centroid"] = list(d["bbox"]), list(d["centroid"])
    return d


def plan_to_row(p: PatchPlan) -> dict:
    return {
        "schema_version": PLAN_SCHEMA_VERSION,
        "patch_id": p.patch_id,
        "split": p.split,
        "source_image": p.source_image,
        "source_image_id": p.source_image_id,
        "source_path": p.source_path,
        "window": [p.window.x0, p.window.y0, p.window.x1, p.window.y1],
        "width": p.width,
        "height": p.height,
        "image_path": p.image_path,
        "som_path": p.som_path,
        "crs": p.georef.crs if p.georef else None,
        "transform": list(p.georef.transform) if p.georef and p.georef.transform else None,
        "objects": [_obj_row(o) for o in p.objects],
        "groups": [{**g.__dict__, "bbox": list(g.bbox)} for g in p.groups],
        "marks": [dict(m.__dict__) for m in p.marks],
        "config_hash": p.config_hash,
    }


def plans_to_table(plans: list[PatchPlan]) -> pa.Table:
    return pa.Table.from_pylist([plan_to_row(p) for p in plans], schema=PLAN_SCHEMA)


def row_to_plan(r: dict) -> PatchPlan:
    """Inverse of `plan_to_row` (for later stages and tests)."""
    version = r.get("schema_version")
    if version != PLAN_SCHEMA_VERSION:
        raise ValueError(f"plan row {r.get('patch_id')!r} has schema version {version}; this code reads {PLAN_SCHEMA_VERSION}")
    georef = Georef(r["crs"], tuple(r["transform"]) if r["transform"] is not None else None) if (r["crs"] or r["transform"]) else None
    return PatchPlan(
        patch_id=r["patch_id"], split=r["split"], source_image=r["source_image"], source_image_id=r["source_image_id"],
        source_path=r["source_path"], window=Window(*r["window"]), width=r["width"], height=r["height"],
        image_path=r["image_path"], som_path=r["som_path"], georef=georef,
        objects=[PlannedObject(**{**o, "bbox": tuple(o["bbox"]), "centroid": tuple(o["centroid"]),
                                  "rle": {"size": list(o["rle"]["size"]), "counts": o["rle"]["counts"]}}) for o in r["objects"]],
        groups=[Group(**{**g, "bbox": tuple(g["bbox"]), "member_ids": list(g["member_ids"]),
                         "rle": {"size": list(g["rle"]["size"]), "counts": g["rle"]["counts"]}}) for g in r["groups"]],
        marks=[Mark(**m) for m in r["marks"]],
        config_hash=r["config_hash"],
    )


def schema_as_json() -> str:
    """Human-readable dump used to check docs/plan-schema.md against the code."""
    return json.dumps({f.name: str(f.type) for f in PLAN_SCHEMA}, indent=1)
