"""The dataset card: its front matter is YAML written by a serializer, its text from settings or data is inert
Markdown, and a card of synthetic data says so where a person and a program both look."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.release.card import md_text, render_card, rows_fingerprint

HOSTILE = "GeoPixelD: mine\nlicense: mit\n---\n# Not a heading <script>x</script> [link](http://e)"


def manifest(synthetic: bool = False, released: tuple[str, ...] = ("val",)) -> dict:
    return {"schema_version": 3, "synthetic": synthetic,
            "splits": {s: {"shards": {f"data/{s}/{s}-00000.parquet": {"sha256": "ab" * 32}}, "stats": {"patches": 1, "records": 1}}
                       for s in released}}


def split_card(card: str) -> tuple[dict, str]:
    """(front matter, body) the way Hugging Face reads a card: between the first two `---` lines."""
    assert card.startswith("---\n")
    head, sep, body = card[4:].partition("\n---\n")
    assert sep, "front matter never closed"
    return yaml.safe_load(head), body


def test_a_name_with_colons_newlines_and_a_license_line_round_trips_exactly():
    meta, body = split_card(render_card(HOSTILE, "cc-by-4.0", manifest()))
    assert meta["pretty_name"] == HOSTILE and meta["license"] == "cc-by-4.0"
    assert meta["configs"] == [{"config_name": "default", "description": f"geopixeld rows {rows_fingerprint(manifest())}",
                                "data_files": [{"split": "val", "path": "data/val/*.parquet"}]}]
    assert "tags" not in meta and "Synthetic data" not in body


def test_the_rows_fingerprint_follows_every_released_shard_and_nothing_else():
    m = manifest(released=("train", "val"))
    base = rows_fingerprint(m)
    m["splits"]["val"]["shards"]["data/val/val-00000.parquet"]["sha256"] = "cd" * 32
    changed = rows_fingerprint(m)
    m["splits"]["val"]["held_back"] = "held back: curation required"
    assert len({base, changed, rows_fingerprint(m)}) == 3
    m["splits"]["val"]["shards"]["data/val/val-00000.parquet"]["sha256"] = "ef" * 32  # held back: not in the hash
    assert rows_fingerprint(m) == rows_fingerprint(manifest(released=("train",)))


def test_text_from_settings_cannot_inject_headings_links_or_html():
    _, body = split_card(render_card(HOSTILE, "cc-by-4.0 <b>x</b>", manifest()))
    headings = [line for line in body.splitlines() if line.startswith("#")]
    assert headings[0].startswith("# GeoPixelD: mine license: mit") and "\n# Not a heading" not in body
    assert "<script>" not in body and "<b>" not in body and "](http://e)" not in body
    assert md_text("- a [b](c) *d* `e` | f") == r"\- a \[b\]\(c\) \*d\* \`e\` \| f"
    assert md_text("12. x") == r"12\. x" and md_text("cc-by-4.0") == "cc-by-4.0"


def test_a_card_of_synthetic_data_says_so_in_the_text_and_the_metadata():
    meta, body = split_card(render_card("demo", "cc-by-4.0", manifest(synthetic=True)))
    assert meta["tags"] == ["synthetic"] and "**Synthetic data.**" in body


def test_hugging_face_datasets_loads_a_folder_whose_card_has_a_hostile_name(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    folder = tmp_path / "dataset"
    (folder / "data/val").mkdir(parents=True)
    pq.write_table(pa.table({"patch_id": ["p1", "p2"]}), folder / "data/val/val-00000.parquet")
    (folder / "README.md").write_text(render_card(HOSTILE, "cc-by-4.0", manifest(synthetic=True)))
    ds = datasets.load_dataset(str(folder))
    assert set(ds) == {"val"} and ds["val"]["patch_id"] == ["p1", "p2"]
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(folder / "README.md")
    assert card.data.pretty_name == HOSTILE and card.data.license == "cc-by-4.0"


@pytest.mark.parametrize("synthetic", [True, False])
def test_the_release_records_whether_its_data_is_synthetic_in_manifest_and_card(tmp_path, synthetic):
    from pipeline.contracts.shards import read_manifest
    from pipeline.release.dataset import DatasetSettings, write_dataset

    summary = write_dataset(tmp_path / "out", [], DatasetSettings(synthetic=synthetic))
    meta, body = split_card((summary.folder / "README.md").read_text())
    assert read_manifest(summary.folder)["synthetic"] is synthetic
    assert ("Synthetic data" in body) is synthetic and (meta.get("tags") == ["synthetic"]) is synthetic
