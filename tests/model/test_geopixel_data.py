"""Sample building and order: one mask per [SEG] in every layout, clear errors, a resumable order, padding."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from model.records import DataError
from model.sampler import epoch_order, rank_batches
from model.samples import GeoPixelDataset, collate
from model.sources import DatasetShards, GeoPixelDFiles, RecordShards, open_source

pytestmark = pytest.mark.usefixtures("gp_one_thread")

SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "geopixeld-sample"


def test_build_root_gives_one_mask_per_seg(gp_demo, gp_dataset, gp_tiny):
    cfg, enc = gp_tiny
    (src,) = gp_dataset.sources
    assert isinstance(src, RecordShards) and src.shards[0].parent == gp_demo / "out" / "train" / "records"
    rows = pq.read_table(src.shards[0].parent).to_pylist()
    assert len(gp_dataset) == sum(r["status"] == "ok" for r in rows) < len(rows)  # the failed record is left out
    s = gp_dataset[0]
    n_seg = int(((s["input_ids"] == enc.ids.seg) & (s["labels"] != -100)).sum())
    assert n_seg == s["masks"].shape[0] > 0
    assert s["masks"].dtype == torch.uint8 and set(s["masks"].unique().tolist()) <= {0, 1}
    assert int(s["image_mask"].sum()) > 0 and s["image_mask"][0].item() is False  # <s> comes first
    answer = [i for i, lab in zip(s["input_ids"].tolist(), s["labels"].tolist()) if lab != -100]
    assert enc.decode(answer).startswith("The image is")  # labels cover the answer only


def _samples_by_patch(ds):
    return {ds.patch(i).patch_id: ds[i] for i in range(len(ds))}


def test_geopixeld_layout_matches_the_parquet_records(gp_demo, gp_dataset, gp_tiny):
    cfg, enc = gp_tiny
    src = open_source(gp_demo / "geopixeld", "train")
    assert isinstance(src, GeoPixelDFiles)
    ds = GeoPixelDataset([src], enc, cfg)
    assert len(ds) == len(gp_dataset)
    want = _samples_by_patch(gp_dataset)
    for pid, a in _samples_by_patch(ds).items():
        ref = want[pid]
        assert torch.equal(a["input_ids"], ref["input_ids"]) and torch.equal(a["labels"], ref["labels"])
        inter = (a["masks"] & ref["masks"]).flatten(1).sum(1).float()
        union = (a["masks"] | ref["masks"]).flatten(1).sum(1).float()
        assert torch.all(inter / union > 0.9)  # polygons traced from the same masks


def test_the_released_dataset_folder_feeds_the_same_samples_as_the_records(gp_demo, gp_dataset, gp_tiny):
    cfg, enc = gp_tiny
    src = open_source(gp_demo / "out" / "dataset", "train")
    assert isinstance(src, DatasetShards) and src.root == gp_demo / "out" / "dataset"
    ds = GeoPixelDataset([src], enc, cfg)
    want = _samples_by_patch(gp_dataset)
    got = _samples_by_patch(ds)
    assert got.keys() == want.keys()
    for pid, s in got.items():
        assert torch.equal(s["input_ids"], want[pid]["input_ids"]) and torch.equal(s["masks"], want[pid]["masks"])


def test_released_sample_resolves_its_paths(gp_tiny):
    if not SAMPLE.is_dir():
        pytest.skip(f"the released GeoPixelD sample is not at {SAMPLE} (../shared is absent)")
    cfg, enc = gp_tiny
    src = GeoPixelDFiles([SAMPLE / "GeoPixelD.json"])  # paths say data/GeoPixelD/train/...; found under train/
    s = GeoPixelDataset([src], enc, cfg)[0]
    assert s["masks"].shape[0] == 4 == int((s["input_ids"] == enc.ids.seg).sum())


def test_count_mismatch_names_the_shard_and_row(gp_demo, gp_tiny, tmp_path):
    cfg, enc = gp_tiny
    bad = tmp_path / "train" / "records"
    bad.mkdir(parents=True)
    t = pq.read_table(gp_demo / "out" / "train" / "records" / "records-00000.parquet")
    phrases = t["phrases"].to_pylist()
    phrases[2] = phrases[2][:-1]
    t = t.set_column(t.schema.get_field_index("phrases"), "phrases",
                     pa.array(phrases, type=t.schema.field("phrases").type))
    pq.write_table(t, bad / "records-00000.parquet")
    with pytest.raises(DataError, match=r"records-00000\.parquet row 2 \(patch .*\): the description has \d+ "
                                         r"\[SEG\] tokens but \d+ phrase masks"):
        GeoPixelDataset([open_source(bad, "train")], enc, cfg)


def test_json_mask_count_mismatch_and_missing_image(gp_demo, gp_tiny, tmp_path):
    cfg, enc = gp_tiny
    index = json.loads((gp_demo / "geopixeld" / "GeoPixelD_train.json").read_text())
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(np.ones((112, 112), np.uint8)))
    entry = dict(index[0], segmentation=[{"size": rle["size"], "counts": rle["counts"].decode()}])
    entry.pop("polygons")
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([entry]))
    with pytest.raises(DataError, match=r"bad\.json record 0 \(id 0\): the description has \d+ \[SEG\] tokens but "
                                        r"1 masks"):
        GeoPixelDataset([GeoPixelDFiles([path])], enc, cfg)
    path.write_text(json.dumps([dict(index[0], image="data/GeoPixelD/train/nope.png")]))
    ds = GeoPixelDataset([GeoPixelDFiles([path], root=gp_demo / "geopixeld")], enc, cfg)
    with pytest.raises(DataError, match=r"record 0 .*nope\.png not found"):
        ds[0]


def test_a_mask_of_another_size_names_the_phrase(gp_demo, gp_tiny, tmp_path):
    cfg, enc = gp_tiny
    split = tmp_path / "train"
    shutil.copytree(gp_demo / "out" / "train" / "patches", split / "patches")
    t = pq.read_table(gp_demo / "out" / "train" / "records" / "records-00000.parquet")
    rows = t.to_pylist()[:1]
    rows[0]["width"] = 100  # the masks are 112 wide
    (split / "records").mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=t.schema), split / "records" / "records-00000.parquet")
    ds = GeoPixelDataset([open_source(split, None)], enc, cfg)
    with pytest.raises(DataError, match=r"row 0 \(patch .*\): phrase 0 \('.*-1'\) mask is 112x112, the patch is "
                                        r"100x112"):
        ds[0]


class _Shards:
    """An index of 40 records over 5 shards, as epoch_order sees a dataset."""

    def __len__(self):
        return 40

    def shard_key(self, i):
        return (0, i // 8)


def test_epoch_order_is_reproducible_and_windowed():
    ds = _Shards()
    a, b = epoch_order(ds, 7, 0, window_shards=2), epoch_order(ds, 7, 0, window_shards=2)
    assert a == b and sorted(a) == list(range(40))
    assert epoch_order(ds, 7, 1, 2) != a and epoch_order(ds, 8, 0, 2) != a
    windows = [a[0:16], a[16:32], a[32:40]]  # two shards, two shards, one shard
    assert all(len({ds.shard_key(i) for i in w}) == (2 if len(w) == 16 else 1) for w in windows)
    assert a[:16] != sorted(a[:16])  # shuffled inside the window


def test_rank_batches_split_evenly_without_overlap():
    order = list(range(23))
    r0, r1 = rank_batches(order, 0, 2, 2), rank_batches(order, 1, 2, 2)
    assert len(r0) == len(r1) == 5
    flat0, flat1 = sum(r0, []), sum(r1, [])
    assert not set(flat0) & set(flat1) and all(len(b) == 2 for b in r0 + r1)


def test_collate_pads_right_and_keeps_images_per_sample(gp_dataset, gp_tiny):
    _, enc = gp_tiny
    a, b = gp_dataset[0], gp_dataset[1]
    batch = collate([a, b], enc.ids.pad)
    n = max(len(a["input_ids"]), len(b["input_ids"]))
    assert batch["input_ids"].shape == (2, n)
    short = 0 if len(a["input_ids"]) < len(b["input_ids"]) else 1
    k = len((a, b)[short]["input_ids"])
    assert batch["attention_mask"][short].tolist() == [True] * k + [False] * (n - k)
    assert set(batch["labels"][short, k:].tolist()) <= {-100}
    assert [m.shape[0] for m in batch["masks"]] == [a["masks"].shape[0], b["masks"].shape[0]]
