"""Where a split's grounded patches are, and one reader per format: trainer, predict and eval all read here.

    GCG record Parquet     OUT/<split>/records/, OUT/<split>/curated/, `geopixeld predict` output   RecordShards
    release dataset        DATASET/data/<split>/<split>-NNNNN.parquet                              DatasetShards
    GeoPixelD JSON         GeoPixelD_<split>.json + <split>/<patch>.json (polygons), or per-patch  GeoPixelDFiles

`locate` finds the files for a path and a split; a build root asks `pipeline.contracts.layout.records_source`
(curated records win once curation has finished them), so a build root with a split means the same records to
every command. Each reader indexes cheaply first (`scan`: ids, descriptions, counts) and returns a full
`model.records.GroundedPatch` per entry on demand, so the trainer streams shards instead of holding them.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.contracts import layout
from pipeline.contracts.fileio import UnsafePath, resolve_inside
from pipeline.contracts.imageio import image_size
from pipeline.contracts.shards import MANIFEST, read_manifest

from model.records import SEG, DataError, GroundedPatch, dataset_patch, gcg_patch, geopixeld_patch, turns_of


class NotFound(DataError):
    """No records of a known layout at a path; the message says where it looked."""


@dataclass(frozen=True)
class Entry:
    """What indexing learns from cheap columns: enough to check counts and to order samples."""

    shard: int  # shard (Parquet) or file (JSON) index
    row: int  # row in the shard / entry in the file
    patch_id: str
    n_seg: int  # [SEG] tokens in the answer turns
    n_masks: int | None  # masks the record carries (None: known only once the entry is read)
    kept: bool  # what the release keeps: status ok, a description, not rejected by curation
    uid: str


# -- Parquet ---------------------------------------------------------------------------------------------------
class _Shards:
    """Parquet shards read on demand, a shard at a time, with a small per-process cache."""

    kind = ""
    REQUIRED = ("patch_id", "description", "phrases")
    COLUMNS: tuple[str, ...] | None = ()
    MASKS = "phrases"  # the list column whose length is the record's mask count
    MASKS_NAME = "phrase masks"

    def __init__(self, files: list[Path], root: Path | None, cache_shards: int = 4):
        self.shards = sorted(Path(f) for f in files)
        if not self.shards:
            raise DataError(f"{root}: no Parquet shards")
        self.root = root
        self._cache: OrderedDict[int, list[dict]] = OrderedDict()
        self._cache_size = max(1, cache_shards)
        self._pid = os.getpid()

    def __repr__(self):
        return f"{type(self).__name__}({self.shards[0].parent})"

    def shard_count(self) -> int:
        return len(self.shards)

    def _columns(self, si: int, wanted) -> list[str]:
        try:
            names = pq.read_schema(self.shards[si]).names
        except Exception as exc:  # noqa: BLE001 - any unreadable shard is reported by name
            raise DataError(f"{self.shards[si]}: cannot read Parquet ({exc})") from exc
        missing = [c for c in self.REQUIRED if c not in names]
        if missing:
            raise DataError(f"{self.shards[si]}: no column(s) {', '.join(missing)}; not GCG records or a GeoPixelD "
                            f"dataset shard")
        return [c for c in wanted if c in names]

    def scan(self) -> list[Entry]:
        """Every row, from the cheap columns (no mask is decoded)."""
        out = []
        for si, shard in enumerate(self.shards):
            cols = self._columns(si, ("patch_id", "description", "status", "curation_status", self.MASKS))
            try:
                t = pq.read_table(shard, columns=cols)
            except Exception as exc:  # noqa: BLE001
                raise DataError(f"{shard}: cannot read {self.kind} rows ({exc})") from exc
            n_masks = pc.list_value_length(t[self.MASKS]).to_pylist()
            desc = t["description"].to_pylist()
            get = lambda c: t[c].to_pylist() if c in t.column_names else [None] * t.num_rows  # noqa: E731
            status, cur = get("status"), get("curation_status")
            for row, pid in enumerate(t["patch_id"].to_pylist()):
                kept = (status[row] or "ok") == "ok" and desc[row] is not None and cur[row] != "rejected"
                out.append(Entry(si, row, pid, (desc[row] or "").count(SEG), n_masks[row] or 0, kept,
                                 f"{shard} row {row} (patch {pid})"))
        return out

    def _rows(self, si: int) -> list[dict]:
        if self._pid != os.getpid():  # a forked loader worker starts with its own cache
            self._cache.clear()
            self._pid = os.getpid()
        if si in self._cache:
            self._cache.move_to_end(si)
            return self._cache[si]
        try:
            names = self._columns(si, ()) if self.COLUMNS is None else self._columns(si, self.COLUMNS)
            rows = pq.read_table(self.shards[si], columns=names or None).to_pylist()
        except DataError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"{self.shards[si]}: cannot read {self.kind} rows ({exc})") from exc
        self._cache[si] = rows
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return rows

    def patch(self, shard: int, row: int) -> GroundedPatch:
        return self._decode(self._rows(shard)[row], str(self.shards[shard]), row)

    def patches(self, shard: int) -> list[GroundedPatch]:
        """Every row of one shard, decoded (eval reads whole splits)."""
        return [self._decode(r, str(self.shards[shard]), k) for k, r in enumerate(self._rows(shard))]

    def texts(self) -> list[str]:
        """Every description (what a tiny tokenizer is trained on)."""
        return [t for s in self.shards for t in pq.read_table(s, columns=["description"])["description"].to_pylist()
                if t]

    def _decode(self, row: dict, source: str, row_no: int) -> GroundedPatch:
        raise NotImplementedError


class RecordShards(_Shards):
    """GCG record shards (docs/gcg-schema.md): drafted, curated, or predicted by `geopixeld predict`. Image paths
    are relative to the split folder (the shards' parent)."""

    kind = "GCG records"
    COLUMNS = None  # every column: a whole row decodes through GCGRecord.from_row

    def _decode(self, row, source, row_no):
        return gcg_patch(row, source, row_no, self.root)


class DatasetShards(_Shards):
    """The release dataset's shards (docs/dataset-schema.md): every row released; image paths relative to the
    dataset folder."""

    kind = "dataset"
    COLUMNS = ("patch_id", "split", "image", "width", "height", "description", "phrases", "masks", "curation_status")
    MASKS, MASKS_NAME = "masks", "masks"

    def _decode(self, row, source, row_no):
        return dataset_patch(row, source, row_no, self.root)


def parquet_source(files: list[Path], root: Path | None = None, cache_shards: int = 4) -> _Shards:
    """The reader of these shards, told apart by their schema (a dataset row carries `masks`)."""
    try:
        names = pq.read_schema(files[0]).names
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{files[0]}: cannot read Parquet ({exc})") from exc
    if "masks" in names:
        return DatasetShards(files, root if root is not None else Path(files[0]).parents[2], cache_shards)
    return RecordShards(files, root if root is not None else Path(files[0]).parents[1], cache_shards)


# -- GeoPixelD JSON --------------------------------------------------------------------------------------------
def json_kind(data) -> str | None:
    """"index" (a list of {conversations, ...}), "patch" (one per-patch JSON) or None (another layout)."""
    if isinstance(data, list) and (not data or (isinstance(data[0], dict) and "conversations" in data[0])):
        return "index"
    if isinstance(data, dict) and "gcg_description" in data:
        return "patch"
    return None


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not readable JSON ({exc})") from exc


def find_beside(root: Path, rel: str) -> Path | None:
    """A path written relative to the authors' repository (`data/GeoPixelD/train/x.png`), found under `root` as
    written or with leading folders dropped one at a time; never outside `root`."""
    parts = Path(rel).parts
    for k in range(len(parts)):
        try:
            p = resolve_inside(root, str(Path(*parts[k:])))
        except UnsafePath:
            continue
        if p.is_file():
            return p
    return None


class GeoPixelDFiles:
    """The released GeoPixelD layout: an index (a JSON list of {id, conversations, image, polygons |
    segmentation}) whose paths are found under `root` (default: the index's folder), or per-patch JSONs
    ({id, img, gcg_description, polygons}) with their PNGs beside them."""

    kind = "GeoPixelD JSON"

    def __init__(self, files: list[Path], root: Path | None = None):
        self.files = [Path(f) for f in files]
        self.root = Path(root) if root else None
        self.data = []
        self.entries: list[tuple[int, int]] = []  # (file, entry or 0)
        for fi, f in enumerate(self.files):
            data = read_json(f)
            kind = json_kind(data)
            if kind is None:
                raise DataError(f"{f}: not a GeoPixelD index (a JSON list of records) or per-patch JSON")
            self.data.append(data)
            self.entries += [(fi, i) for i in range(len(data))] if kind == "index" else [(fi, 0)]

    def __repr__(self):
        return f"GeoPixelDFiles({self.files[0]})"

    def __len__(self) -> int:
        return len(self.entries)

    def shard_count(self) -> int:
        return 1

    def texts(self) -> list[str]:
        """Every turn's text (what a tiny tokenizer is trained on)."""
        out = []
        for d in self.data:
            if isinstance(d, dict):
                out.append(str(d.get("gcg_description") or ""))
            else:
                out += [str(c.get("value", "")) for e in d if isinstance(e, dict) for c in e.get("conversations", [])]
        return out

    def _root(self, fi: int) -> Path:
        return self.root or self.files[fi].parent

    def _uid(self, fi: int, i: int) -> str:
        e = self.data[fi]
        if isinstance(e, dict):
            return f"{self.files[fi]} (patch {Path(str(e.get('img') or self.files[fi].name)).stem})"
        rec = e[i]
        return f"{self.files[fi]} record {i} (id {rec.get('id') if isinstance(rec, dict) else '?'})"

    def scan(self) -> list[Entry]:
        out = []
        for k, (fi, i) in enumerate(self.entries):
            data, uid = self.data[fi], self._uid(fi, i)
            if isinstance(data, dict):
                desc = data.get("gcg_description")
                out.append(Entry(k, k, Path(str(data.get("img") or self.files[fi].name)).stem,
                                 str(desc or "").count(SEG), None, isinstance(desc, str), uid))
                continue
            e = data[i]
            if not isinstance(e, dict) or not isinstance(e.get("image"), str) or \
                    not ("polygons" in e or "segmentation" in e):
                raise DataError(f"{uid}: needs `image` and `polygons` or `segmentation`")
            turns = turns_of(e.get("conversations"), uid)
            seg = e.get("segmentation")
            out.append(Entry(k, k, Path(e["image"]).stem, sum(a.count(SEG) for _, a in turns),
                             len(seg) if isinstance(seg, list) else None, True, uid))
        return out

    def patch(self, shard: int, row: int) -> GroundedPatch:
        """Entry `row` (the index `Entry.row`); per-patch polygons are read now."""
        fi, i = self.entries[row]
        data, uid, root = self.data[fi], self._uid(fi, i), self._root(fi)
        if isinstance(data, dict):
            return self._per_patch(data, self.files[fi], uid)
        e = data[i]
        if not isinstance(e, dict):
            raise DataError(f"{uid}: not a JSON object")
        turns = turns_of(e.get("conversations"), uid)
        rel = str(e.get("image") or "")
        image = find_beside(root, rel) if rel else None
        image_path = str(image.relative_to(Path(os.path.realpath(root)))) if image else rel
        pid = Path(str(e.get("image") or e.get("id"))).stem
        if isinstance(e.get("segmentation"), list):  # the variant with one RLE per [SEG] inline
            size = image_size(image)[::-1] if image else None
            return geopixeld_patch(pid, turns[0][1], turns, e["segmentation"], "segmentation", size, image_path,
                                   root, str(self.files[fi]), uid)
        poly_rel = e.get("polygons")
        found = find_beside(root, poly_rel) if isinstance(poly_rel, str) and poly_rel else None
        if found is None:
            raise DataError(f"{uid}: image {pid}: per-patch JSON {poly_rel!r} not found under {root}")
        per_patch = read_json(found)
        if not isinstance(per_patch, dict):
            raise DataError(f"{found}: not a per-patch JSON object")
        p = self._per_patch(per_patch, found, uid, image=image)
        return GroundedPatch(p.patch_id, p.description, p.phrases, p.height, p.width, None, image_path, root,
                             turns, source=p.source, uid=uid)

    def _per_patch(self, data: dict, path: Path, uid: str, image: Path | None = None) -> GroundedPatch:
        pid = Path(str(data.get("img") or path.name)).stem
        desc, polygons = data.get("gcg_description"), data.get("polygons")
        if not isinstance(desc, str) or not isinstance(polygons, list):
            raise DataError(f"{path}: image {pid}: needs gcg_description (text) and polygons (one entry per [SEG])")
        if image is None:
            png = path.parent / Path(str(data.get("img") or f"{pid}.png")).name
            image = png if png.is_file() else None
        size = image_size(image)[::-1] if image else None
        rel = image.name if image else f"{pid}.png"
        return geopixeld_patch(pid, desc, None, polygons, "polygons", size, rel, path.parent, str(path), uid)


# -- where the records are -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Located:
    format: str  # "parquet" or "json"
    files: list[Path]
    root: Path | None  # what the records' image paths are relative to (None: each reader's own rule)


def _build_records(out: Path, split: str) -> Path | None:
    """A build's records for `split` (curated once finished, else drafted) when the build has them."""
    try:
        if layout.records_dir(out, split).is_dir() or layout.curated_dir(out, split).is_dir():
            return layout.records_source(out, split)
    except ValueError:  # not a split name
        return None
    return None


def _parquet_folder(folder: Path, root: Path | None) -> Located:
    shards = sorted(folder.glob("*.parquet"))
    m = read_manifest(folder)
    if m is not None and "complete" in m and not m["complete"]:
        raise DataError(f"{folder / MANIFEST}: the shards are unfinished (the run that writes them did not "
                        f"complete); finish it first")
    if not shards:
        raise NotFound(f"{folder}: no Parquet shards")
    return Located("parquet", shards, root)


def locate(path: Path, split: str | None) -> Located:
    """The files holding `split`'s records at `path`: a Parquet or JSON file; a build root (or the `make demo`
    folder holding it as out/) with a split, or a split folder (`layout.records_source`: curated, else records); a
    release dataset folder (data/<split>/; the split may be left out when it has one); a folder of shards; a
    GeoPixelD index (GeoPixelD_<split>.json, also under geopixeld/) or per-patch JSONs; or <split>/ under it."""
    path = Path(path)
    if not path.exists():
        raise NotFound(f"no {split!r} records under {path}: no such file or folder")
    if path.is_file():
        if path.suffix == ".parquet":
            return Located("parquet", [path], None)
        if path.suffix == ".json":
            return Located("json", [path], None)
        raise DataError(f"{path}: not a .parquet or .json file")
    for out in ([path, path / "out"] if split else []):
        found = _build_records(out, split)
        if found is not None:
            if not found.is_dir():
                raise NotFound(f"no {split!r} records under {path}: {found} is missing")
            return _parquet_folder(found, layout.split_dir(out, split))
    found = _build_records(path.parent, path.name)  # a split folder
    if found is not None and found.is_dir():
        return _parquet_folder(found, path)
    if (path / "data").is_dir() and not list(path.glob("*.parquet")):  # a release dataset folder
        splits = sorted(p.name for p in (path / "data").iterdir() if p.is_dir())
        chosen = split if split else (splits[0] if len(splits) == 1 else None)
        if chosen is None or chosen not in splits:
            raise DataError(f"{path}: a dataset with splits {', '.join(splits) or '(none)'}; choose one with --split"
                            + (f" (no split {split!r})" if split else ""))
        return _parquet_folder(path / "data" / chosen, path)
    if any(path.glob("*.parquet")):
        return _parquet_folder(path, None)
    indexes = sorted(path.glob("GeoPixelD*.json"))
    for cand in ([path / f"GeoPixelD_{split}.json", path / "geopixeld" / f"GeoPixelD_{split}.json"] if split else []):
        if cand.is_file():
            indexes = [cand]
            break
    if len(indexes) == 1:
        return Located("json", indexes, None)
    if len(indexes) > 1:
        raise DataError(f"{path}: several GeoPixelD indexes ({', '.join(i.name for i in indexes)}); choose one with "
                        f"--split or name the file")
    files = sorted(p for p in path.glob("*.json") if not p.name.startswith("_"))
    if files:
        return Located("json", files, None)
    if split and (path / split).is_dir():
        return locate(path / split, None)
    build = any(c.is_dir() and _build_records(path, c.name) for c in path.iterdir())
    raise NotFound(f"no {split!r} records under {path}: looked for *.parquet in {path}, <split>/curated and "
                   f"<split>/records (also under out/), a dataset folder (data/<split>/) and GeoPixelD_<split>.json"
                   + ("; for a build root pass --split" if build and not split else ""))


def open_source(path: Path, split: str | None, cache_shards: int = 4):
    """The reader of a split's records at `path` (Parquet or GeoPixelD JSON; see `locate`)."""
    loc = locate(path, split)
    if loc.format == "parquet":
        return parquet_source(loc.files, loc.root, cache_shards)
    return GeoPixelDFiles(loc.files)
