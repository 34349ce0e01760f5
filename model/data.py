"""Training data: GCG Parquet shards (and the released GeoPixelD JSON layout) -> tokenised conversations with
one mask per [SEG], in a reproducible, resumable order.

Sources are indexed first from cheap columns (patch id, description, phrase count), which checks that every
record has as many masks as `[SEG]` tokens before a single step runs; records are then read on demand, a shard at
a time, with a small per-worker cache. The epoch order is a *shard-window shuffle*: shards are shuffled, and the
records of each window of `window_shards` consecutive shards are shuffled together, so a worker holds only a few
shards at once while a batch still mixes patches from many source images. The order depends only on (seed,
epoch), so a resumed run replays exactly the same batches.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from torch.utils.data import Dataset

from pipeline.contracts.geopixeld_format import GCG_QUESTION, polygons_to_mask
from pipeline.contracts.imageio import read_image, resolve_inside
from pipeline.contracts.masks import decode as decode_rle

from model.config import GeoPixelConfig
from model.tokenizer import ChatEncoder
from model.vision import hd_grid, image_token_count

SEG = "[SEG]"


class DataError(ValueError):
    """A record that cannot be trained on; the message names the file and the record."""


@dataclass(frozen=True)
class Ref:
    source: int
    shard: int  # shard index (Parquet) or 0 (JSON)
    row: int  # row in the shard / entry in the JSON list
    n_seg: int


@dataclass
class Item:
    uid: str  # "<file> row N (patch P)": what an error message names
    patch_id: str
    image: Path
    turns: list[tuple[str, str]]
    masks: np.ndarray  # (n, H, W) uint8, caption order


# -- sources ---------------------------------------------------------------------------------------------------
class ParquetSource:
    """`<split>/records/*.parquet` written by `geopixeld draft` (docs/gcg-schema.md); image paths are relative to
    the split folder. Only records with status `ok` (and not rejected by curation) are used."""

    COLUMNS = ["patch_id", "image_path", "width", "height", "description", "phrases"]

    def __init__(self, folder: Path, question: str = GCG_QUESTION, cache_shards: int = 4):
        self.folder = Path(folder)
        self.split_dir = self.folder.parent
        self.shards = sorted(p for p in self.folder.glob("*.parquet"))
        if not self.shards:
            raise DataError(f"{self.folder}: no Parquet shards")
        self.question = question
        self._cache: OrderedDict[int, dict] = OrderedDict()
        self._cache_size = max(1, cache_shards)
        self._pid = os.getpid()

    def __repr__(self):
        return f"ParquetSource({self.folder})"

    def scan(self, source: int) -> list[Ref]:
        refs = []
        for si, shard in enumerate(self.shards):
            try:
                cols = ["patch_id", "description", "status", "phrases"]
                names = pq.read_schema(shard).names
                if "curation_status" in names:
                    cols.append("curation_status")
                t = pq.read_table(shard, columns=cols)
            except Exception as exc:  # noqa: BLE001 - any unreadable shard is reported by name
                raise DataError(f"{shard}: cannot read GCG records ({exc})") from exc
            n_phr = pc.list_value_length(t["phrases"]).to_pylist()
            desc = t["description"].to_pylist()
            status = t["status"].to_pylist()
            cur = t["curation_status"].to_pylist() if "curation_status" in t.column_names else [None] * len(desc)
            for row, pid in enumerate(t["patch_id"].to_pylist()):
                if status[row] != "ok" or desc[row] is None or cur[row] == "rejected":
                    continue
                n_seg = desc[row].count(SEG)
                if n_seg != (n_phr[row] or 0):
                    raise DataError(f"{shard} row {row} (patch {pid}): the description has {n_seg} [SEG] tokens "
                                    f"but {n_phr[row] or 0} phrase masks")
                refs.append(Ref(source, si, row, n_seg))
        return refs

    def shard_count(self) -> int:
        return len(self.shards)

    def _table(self, si: int) -> dict:
        if self._pid != os.getpid():  # a forked loader worker starts with its own cache
            self._cache.clear()
            self._pid = os.getpid()
        if si in self._cache:
            self._cache.move_to_end(si)
            return self._cache[si]
        t = pq.read_table(self.shards[si], columns=self.COLUMNS).to_pydict()
        self._cache[si] = t
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return t

    def _image_path(self, t: dict, row: int) -> str:
        return t["image_path"][row] or ""

    def _locate(self, ref: Ref) -> tuple[dict, int, str, str, Path]:
        """The shard's columns, the row, its patch id, a name for errors and the image path (inside the folder)."""
        t = self._table(ref.shard)
        row = ref.row
        pid = t["patch_id"][row]
        uid = f"{self.shards[ref.shard]} row {row} (patch {pid})"
        try:
            image = resolve_inside(self.split_dir, self._image_path(t, row))
        except ValueError as exc:
            raise DataError(f"{uid}: {exc}") from exc
        return t, row, pid, uid, image

    def load(self, ref: Ref) -> Item:
        t, row, pid, uid, image = self._locate(ref)
        h, w = t["height"][row], t["width"][row]
        masks = np.zeros((len(t["phrases"][row]), h, w), np.uint8)
        for k, ph in enumerate(t["phrases"][row]):
            m = decode_rle(ph["rle"])
            if m.shape != (h, w):
                raise DataError(f"{uid}: phrase {k} ({ph['tag']!r}) mask is {m.shape[1]}x{m.shape[0]}, the patch "
                                f"is {w}x{h}")
            masks[k] = m
        return Item(uid, pid, image, [(self.question, t["description"][row])], masks)


class DatasetSource(ParquetSource):
    """`OUT/dataset/data/<split>/*.parquet`, the released dataset (docs/dataset-schema.md): every row is released
    (grounded, not rejected by curation); one mask per `[SEG]` in `masks`, images at `image.path` relative to the
    dataset folder."""

    COLUMNS = ["patch_id", "image", "width", "height", "description", "masks"]

    def __init__(self, folder: Path, question: str = GCG_QUESTION, cache_shards: int = 4):
        super().__init__(folder, question, cache_shards)
        self.split_dir = self.folder.parents[1]  # image paths are relative to the dataset folder

    def __repr__(self):
        return f"DatasetSource({self.folder})"

    def scan(self, source: int) -> list[Ref]:
        refs = []
        for si, shard in enumerate(self.shards):
            try:
                t = pq.read_table(shard, columns=["patch_id", "description", "masks"])
            except Exception as exc:  # noqa: BLE001 - any unreadable shard is reported by name
                raise DataError(f"{shard}: cannot read dataset rows ({exc})") from exc
            n_masks = pc.list_value_length(t["masks"]).to_pylist()
            for row, (pid, desc) in enumerate(zip(t["patch_id"].to_pylist(), t["description"].to_pylist())):
                n_seg = desc.count(SEG)
                if n_seg != (n_masks[row] or 0):
                    raise DataError(f"{shard} row {row} (patch {pid}): the description has {n_seg} [SEG] tokens "
                                    f"but {n_masks[row] or 0} masks")
                refs.append(Ref(source, si, row, n_seg))
        return refs

    def _image_path(self, t: dict, row: int) -> str:
        return (t["image"][row] or {}).get("path") or ""

    def load(self, ref: Ref) -> Item:
        t, row, pid, uid, image = self._locate(ref)
        h, w = t["height"][row], t["width"][row]
        masks = np.zeros((len(t["masks"][row]), h, w), np.uint8)
        for k, m in enumerate(t["masks"][row]):
            masks[k] = _coco_rle(m["rle"], h, w, f"{uid}: mask {k}")
        return Item(uid, pid, image, [(self.question, t["description"][row])], masks)


class GeoPixelDSource:
    """The released layout: a JSON list of `{id, conversations, image, polygons | segmentation}`.

    Paths inside it (e.g. `data/GeoPixelD/train/P0224_0_800_0_800.png`) are resolved against `root` (default: the
    JSON's folder); when that misses, leading folders are dropped one at a time, so the released index works
    from wherever the folder was copied.
    """

    def __init__(self, index: Path, root: Path | None = None):
        self.index = Path(index)
        self.root = Path(root) if root else self.index.parent
        try:
            self.entries = json.loads(self.index.read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"{self.index}: cannot read the GeoPixelD index ({exc})") from exc
        if not isinstance(self.entries, list):
            raise DataError(f"{self.index}: expected a JSON list of records")

    def __repr__(self):
        return f"GeoPixelDSource({self.index})"

    def shard_count(self) -> int:
        return 1

    def _uid(self, i: int) -> str:
        e = self.entries[i]
        return f"{self.index} record {i} (id {e.get('id') if isinstance(e, dict) else '?'})"

    def _turns(self, i: int) -> list[tuple[str, str]]:
        e = self.entries[i]
        conv = e.get("conversations") if isinstance(e, dict) else None
        if not conv or len(conv) % 2:
            raise DataError(f"{self._uid(i)}: `conversations` must alternate human and bot turns")
        turns = []
        for q, a in zip(conv[::2], conv[1::2]):
            if q.get("from", "").lower() not in ("human", "user") or a.get("from", "").lower() in ("human", "user"):
                raise DataError(f"{self._uid(i)}: turns must go human, bot, human, bot, ...")
            turns.append((str(q.get("value", "")), str(a.get("value", ""))))
        return turns

    def scan(self, source: int) -> list[Ref]:
        refs = []
        for i, e in enumerate(self.entries):
            turns = self._turns(i)
            if not isinstance(e.get("image"), str) or not ("polygons" in e or "segmentation" in e):
                raise DataError(f"{self._uid(i)}: needs `image` and `polygons` or `segmentation`")
            n_seg = sum(a.count(SEG) for _, a in turns)
            if isinstance(e.get("segmentation"), list) and len(e["segmentation"]) != n_seg:
                raise DataError(f"{self._uid(i)}: {n_seg} [SEG] tokens but {len(e['segmentation'])} masks")
            refs.append(Ref(source, 0, i, n_seg))
        return refs

    def _path(self, rel: str, i: int) -> Path:
        p = Path(rel)
        if p.is_absolute():
            if p.exists():
                return p
        else:
            for k in range(len(p.parts)):
                cand = self.root.joinpath(*p.parts[k:])
                if cand.exists():
                    return cand
        raise DataError(f"{self._uid(i)}: {rel} not found under {self.root}")

    def load(self, ref: Ref) -> Item:
        i = ref.row
        e, uid, turns = self.entries[i], self._uid(i), self._turns(i)
        image = self._path(e["image"], i)
        h, w = _image_hw(image, uid)
        if "polygons" in e:
            poly_file = self._path(e["polygons"], i)
            try:
                polys = json.loads(poly_file.read_text())["polygons"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise DataError(f"{uid}: {poly_file}: cannot read `polygons` ({exc})") from exc
            masks = np.stack([polygons_to_mask(p, h, w) for p in polys]) if polys else np.zeros((0, h, w), np.uint8)
        else:
            masks = np.stack([_coco_rle(r, h, w, uid) for r in e["segmentation"]]) if e["segmentation"] \
                else np.zeros((0, h, w), np.uint8)
        n_seg = sum(a.count(SEG) for _, a in turns)
        if masks.shape[0] != n_seg:
            raise DataError(f"{uid}: {n_seg} [SEG] tokens but {masks.shape[0]} masks")
        return Item(uid, str(e.get("id", i)), image, turns, masks)


def _image_hw(path: Path, uid: str) -> tuple[int, int]:
    try:
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        img = None
    if img is None:
        raise DataError(f"{uid}: cannot decode image {path}")
    return img.shape[:2]


def _coco_rle(rle: dict, h: int, w: int, uid: str) -> np.ndarray:
    from pycocotools import mask as mask_utils

    try:
        if isinstance(rle.get("counts"), list):
            rle = mask_utils.frPyObjects(rle, *rle["size"])
        m = decode_rle(rle)
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{uid}: unreadable segmentation RLE ({exc})") from exc
    if m.shape != (h, w):
        raise DataError(f"{uid}: mask is {m.shape[1]}x{m.shape[0]} but the image is {w}x{h}")
    return m


def resolve_sources(data: str | Path, split: str, question: str = GCG_QUESTION, cache_shards: int = 4) -> list:
    """Where a split's records are: the released dataset (`data/<split>`, `dataset/data/<split>` or
    `out/dataset/data/<split>`, the `make demo` layout), a records folder, `<split>/records`, `out/<split>/records`,
    or a GeoPixelD JSON (`GeoPixelD_<split>.json`, the export layout)."""
    p = Path(data)
    if p.is_file() and p.suffix == ".json":
        return [GeoPixelDSource(p)]
    for d in (p / "data" / split, p / "dataset" / "data" / split, p / "out" / "dataset" / "data" / split):
        if d.is_dir() and any(d.glob("*.parquet")):  # the released dataset first: grounded, curated rows only
            return [DatasetSource(d, question, cache_shards)]
    candidates = [p, p / "records", p / split / "records", p / "out" / split / "records"]
    for c in candidates:
        if c.is_dir() and any(c.glob("*.parquet")):
            return [ParquetSource(c, question, cache_shards)]
    for j in (p / f"GeoPixelD_{split}.json", p / "geopixeld" / f"GeoPixelD_{split}.json"):
        if j.is_file():
            return [GeoPixelDSource(j)]
    raise DataError(f"no {split!r} records under {p}: looked for *.parquet in " + ", ".join(map(str, candidates))
                    + f" and for GeoPixelD_{split}.json")


# -- samples ---------------------------------------------------------------------------------------------------
class GeoPixelDataset(Dataset):
    """Index -> one tokenised, image-prepared sample (uint8 images; normalised on the device)."""

    def __init__(self, sources: list, encoder: ChatEncoder, cfg: GeoPixelConfig, max_length: int = 16384):
        self.sources, self.encoder, self.cfg, self.max_length = sources, encoder, cfg, max_length
        self.refs: list[Ref] = []
        for i, s in enumerate(sources):
            self.refs += s.scan(i)
        if not self.refs:
            raise DataError("no usable records in " + ", ".join(map(repr, sources)))

    def __len__(self) -> int:
        return len(self.refs)

    def shard_key(self, i: int) -> tuple[int, int]:
        r = self.refs[i]
        return r.source, r.shard

    def __getitem__(self, i: int) -> dict:
        ref = self.refs[i]
        item = self.sources[ref.source].load(ref)
        try:
            rgb, _ = read_image(item.image)
        except OSError as exc:
            raise DataError(f"{item.uid}: {exc}") from exc
        if item.masks.shape[1:] != rgb.shape[:2]:
            raise DataError(f"{item.uid}: masks are {item.masks.shape[2]}x{item.masks.shape[1]} but the image "
                            f"{item.image} is {rgb.shape[1]}x{rgb.shape[0]}")
        return make_sample(rgb, item.turns, item.masks, self.encoder, self.cfg, item.uid, item.patch_id,
                           self.max_length)


def prepare_images(rgb: np.ndarray, cfg: GeoPixelConfig) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(HD divider image uint8 (3, H', W'), SAM2 image uint8 (3, S, S), image-token count)."""
    vc = cfg.vision
    h, w = rgb.shape[:2]
    new_w, new_h, cols, rows = hd_grid(w, h, vc)
    img = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_AREA if new_w < w else cv2.INTER_LINEAR)
    pad_h, pad_w = rows * vc.tile_size - new_h, cols * vc.tile_size - new_w
    if pad_h or pad_w:  # white, centred (the released training transform)
        img = cv2.copyMakeBorder(img, pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2,
                                 cv2.BORDER_CONSTANT, value=(255, 255, 255))
    s = cfg.sam.image_size
    sam = cv2.resize(rgb, (s, s), interpolation=cv2.INTER_AREA if s < max(h, w) else cv2.INTER_LINEAR)
    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))  # noqa: E731
    return to_t(img), to_t(sam), image_token_count(rows, cols, vc)


def make_sample(rgb, turns, masks, encoder: ChatEncoder, cfg: GeoPixelConfig, uid: str, patch_id: str,
                max_length: int) -> dict:
    hd, sam, n_img = prepare_images(rgb, cfg)
    enc = encoder.encode(turns, n_img)
    if len(enc.input_ids) > max_length:
        raise DataError(f"{uid}: {len(enc.input_ids)} tokens exceed max_length {max_length}")
    n_seg = sum(1 for t, lab in zip(enc.input_ids, enc.labels) if t == encoder.ids.seg and lab != -100)
    if n_seg != masks.shape[0]:
        raise DataError(f"{uid}: {n_seg} [SEG] tokens after tokenisation but {masks.shape[0]} masks")
    masks = loss_grid(masks, cfg.loss_mask_size)
    return {"uid": uid, "patch_id": patch_id, "input_ids": torch.tensor(enc.input_ids),
            "labels": torch.tensor(enc.labels), "image_mask": torch.tensor(enc.image_mask),
            "hd_image": hd, "sam_image": sam, "masks": torch.from_numpy(masks), "size": rgb.shape[:2]}


def loss_grid(masks: np.ndarray, size: int | None) -> np.ndarray:
    """Masks at the loss resolution: unchanged, or nearest-resized so the long side is `size`."""
    n, h, w = masks.shape
    if not size or max(h, w) <= size:
        return masks
    s = size / max(h, w)
    hw = (max(1, round(w * s)), max(1, round(h * s)))
    return np.stack([cv2.resize(m, hw, interpolation=cv2.INTER_NEAREST) for m in masks]) if n \
        else np.zeros((0, hw[1], hw[0]), np.uint8)


def collate(samples: list[dict], pad_id: int) -> dict:
    """Right-pad the sequences; images and masks stay per sample."""
    n = max(len(s["input_ids"]) for s in samples)

    def pad(key, value):
        return torch.stack([torch.cat([s[key], torch.full((n - len(s[key]),), value, dtype=s[key].dtype)])
                            for s in samples])

    return {"input_ids": pad("input_ids", pad_id), "labels": pad("labels", -100),
            "image_mask": pad("image_mask", False),
            "attention_mask": torch.stack([torch.arange(n) < len(s["input_ids"]) for s in samples]),
            "hd_images": [s["hd_image"] for s in samples], "sam_images": torch.stack([s["sam_image"] for s in samples]),
            "masks": [s["masks"] for s in samples], "sizes": [tuple(s["size"]) for s in samples],
            "ids": [s["uid"] for s in samples], "patch_ids": [s["patch_id"] for s in samples]}


# -- order -----------------------------------------------------------------------------------------------------
def epoch_order(dataset: GeoPixelDataset, seed: int, epoch: int, window_shards: int) -> list[int]:
    """The global sample order of an epoch: shards shuffled, records shuffled within windows of shards."""
    g = torch.Generator().manual_seed(seed * 1000003 + epoch)
    by_shard: dict[tuple[int, int], list[int]] = {}
    for i in range(len(dataset)):
        by_shard.setdefault(dataset.shard_key(i), []).append(i)
    keys = sorted(by_shard)
    keys = [keys[j] for j in torch.randperm(len(keys), generator=g).tolist()]
    order: list[int] = []
    w = max(1, window_shards)
    for k in range(0, len(keys), w):
        window = [i for key in keys[k:k + w] for i in by_shard[key]]
        order += [window[j] for j in torch.randperm(len(window), generator=g).tolist()]
    return order


def rank_batches(order: list[int], rank: int, world: int, batch: int) -> list[list[int]]:
    """This rank's batches of an epoch. Every rank gets the same number of full batches (the tail that cannot
    be split evenly is dropped, as DistributedSampler + drop_last would)."""
    per_rank = len(order) // world // batch * batch
    mine = order[rank: per_rank * world: world]
    return [mine[i: i + batch] for i in range(0, len(mine), batch)]


class BatchList(torch.utils.data.Sampler):
    """A fixed list of batches (the resumable part of an epoch)."""

    def __init__(self, batches: list[list[int]]):
        self.batches = batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def prompt_batch(encoder: ChatEncoder, rgb: np.ndarray, cfg: GeoPixelConfig, question: str = GCG_QUESTION) -> dict:
    """Inference inputs for one image: the prompt ids with image positions, and both image tensors."""
    hd, sam, n_img = prepare_images(rgb, cfg)
    enc = encoder.prompt(question, n_img)
    return {"input_ids": torch.tensor([enc.input_ids]), "image_mask": torch.tensor([enc.image_mask]),
            "hd_image": hd, "sam_image": sam, "size": rgb.shape[:2]}
