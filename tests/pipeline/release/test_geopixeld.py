"""The exporter reproduces the released GeoPixelD sample from its masks and caption."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.contracts.geopixeld_format import mask_to_polygons, polygons_to_mask, released_record
from pipeline.release.geopixeld import write_released

SAMPLE = Path(__file__).resolve().parents[4] / "shared" / "fixtures" / "geopixeld-sample"


@pytest.fixture
def sample():
    if not SAMPLE.is_dir():
        pytest.skip(f"the released GeoPixelD sample is not at {SAMPLE} (../shared is absent)")
    index = json.loads((SAMPLE / "GeoPixelD.json").read_text())
    per_patch = json.loads((SAMPLE / "train" / "P0224_0_800_0_800.json").read_text())
    return index, per_patch


def test_export_of_sample_masks_reads_back_equal(sample, tmp_path):
    index, per_patch = sample
    masks = [polygons_to_mask(entry, 800, 800) for entry in per_patch["polygons"]]
    entry, ours = released_record(per_patch["id"], "P0224_0_800_0_800", per_patch["gcg_description"], masks,
                                  "data/GeoPixelD", "train")
    assert ours == per_patch
    assert entry == index[0]
    path = write_released(tmp_path, "train", [(entry, ours, SAMPLE / "train" / "P0224_0_800_0_800.png")])
    assert json.loads(path.read_text()) == index
    assert json.loads((tmp_path / "train" / "P0224_0_800_0_800.json").read_text()) == per_patch
    assert (tmp_path / "train" / "P0224_0_800_0_800.png").read_bytes() == (SAMPLE / "train/P0224_0_800_0_800.png").read_bytes()


def test_seg_count_must_match_masks():
    with pytest.raises(ValueError, match="2 \\[SEG\\] tokens but 1 masks"):
        released_record(0, "P1", "<p> a-1 </p> [SEG] and <p> b-1 </p> [SEG]", [np.ones((4, 4), np.uint8)], "d", "val")


def test_polygons_round_trip_a_mask_with_two_parts():
    m = np.zeros((50, 50), np.uint8)
    m[5:15, 5:20] = 1
    m[30:45, 25:40] = 1
    polys = mask_to_polygons(m)
    assert len(polys) == 2 and (polygons_to_mask(polys, 50, 50) == m).all()


def _item(patch_id: str, png: Path | None):
    index, per_patch = released_record(0, patch_id, "a <p> plane-1 </p> [SEG]", [np.ones((4, 4), np.uint8)], "d", "val")
    return index, per_patch, png


def test_a_named_png_that_is_missing_stops_the_export_before_it_writes(tmp_path):
    from pipeline.contracts.shards import PlansNotReady

    png = tmp_path / "patches" / "P1.png"
    with pytest.raises(PlansNotReady, match=f"{png}: missing; run `geopixeld plan` for split 'val' again"):
        write_released(tmp_path / "gpd", "val", [_item("P1", png)])
    assert not (tmp_path / "gpd").exists()
    png.parent.mkdir()
    png.write_bytes(b"\x89PNG")
    write_released(tmp_path / "gpd", "val", [_item("P1", png), _item("P2", None)])
    assert (tmp_path / "gpd/val/P1.png").read_bytes() == b"\x89PNG" and not (tmp_path / "gpd/val/P2.png").exists()


def test_two_entries_of_one_patch_id_are_refused(tmp_path):
    with pytest.raises(ValueError, match="patch id 'P1' is in the val export 2 times"):
        write_released(tmp_path, "val", [_item("P1", None), _item("P1", None)])
