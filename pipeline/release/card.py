"""The dataset card (README.md of a built dataset): Hugging Face metadata, statistics beside the paper's, and
how to load the files. Rendered from the dataset manifest only, so it always matches what was written."""

from __future__ import annotations

import yaml

from pipeline.contracts.markdown import md_text

# GeoPixelD as released (GeoPixel, ICML 2025; ../shared/GEOPIXELD.md). None: not reported.
PAPER = {
    "train": {"holistic": 16795, "instance": 36793, "group": 17023, "phrases": 53816, "objects": 600817, "caption_chars": 740},
    "test": {"holistic": None, "instance": None, "group": None, "phrases": 5427, "objects": 61384, "caption_chars": 647},
}

_ROWS = [("holistic", "holistic annotations (patches)"), ("instance", "instance annotations (phrases)"),
         ("group", "group annotations (phrases)"), ("phrases", "grounded phrases ([SEG])"),
         ("objects", "objects covered by the masks"), ("caption_chars", "mean description length (characters)")]


def _fmt(v) -> str:
    if v is None:
        return "–"
    return f"{v:,.0f}" if isinstance(v, (int, float)) else str(v)


def stats_table(manifest: dict) -> str:
    """One table per split: this build beside GeoPixelD's published numbers."""
    parts = []
    for split, entry in manifest["splits"].items():
        if entry.get("held_back"):
            parts.append(f"### {split}\n\nNot released: {entry['held_back']}.\n")
            continue
        s = entry.get("stats", {})
        ours = {k: s.get(k, 0) for k, _ in _ROWS}
        ours["caption_chars"] = round(s.get("caption_chars", 0) / s["patches"]) if s.get("patches") else None
        paper = PAPER.get({"val": "test", "validation": "test"}.get(split, split), {})
        lines = [f"### {split}", "", "| | this build | GeoPixelD (paper) |", "|---|---:|---:|"]
        for k, label in _ROWS:
            lines.append(f"| {label} | {_fmt(ours[k])} | {_fmt(paper.get(k))} |")
        # drafter names and curation statuses come from the records: escaped like every text from data
        drafters = ", ".join(f"{md_text(k.split(': ', 1)[1])} {v:,}" for k, v in sorted(s.items()) if k.startswith("drafter: "))
        curation = ", ".join(f"{md_text(k.split(': ', 1)[1])} {v:,}" for k, v in sorted(s.items()) if k.startswith("curation: "))
        lines += ["", f"{s.get('records', 0):,} patches drafted; {s.get('failed', 0):,} failed grounding and "
                      f"{s.get('rejected', 0):,} were rejected by curators (both left out); "
                      f"{s.get('dropped', 0):,} planned instances or groups were dropped from descriptions "
                      "(listed per row in `dropped`).",
                  f"Drafted by: {drafters or '–'}. Curation: {curation or '–'}."]
        if "phrases_accepted" in entry:
            lines.append(f"Curated phrases: {entry['phrases_accepted']:,} accepted, {entry['phrases_edited']:,} edited, "
                         f"{entry['phrases_rejected']:,} rejected.")
        if paper and split != "train":
            lines.append("(The paper's column is GeoPixelD's hand-validated test split.)")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


class _FrontMatterDumper(yaml.SafeDumper):
    """Text with a line break is written double-quoted on one line (`\\n` escaped), so no value of the front
    matter can put a `---` at the start of a line and end the block early."""


def _str(dumper: yaml.SafeDumper, v: str):
    breaks = any(c in v for c in "\r\n\x85\u2028\u2029")
    return dumper.represent_scalar("tag:yaml.org,2002:str", v, style='"' if breaks else None)


_FrontMatterDumper.add_representer(str, _str)

def front_matter(name: str, license: str, manifest: dict) -> dict:
    """The card's Hugging Face metadata (dumped by YAML, never formatted by hand)."""
    meta = {"license": license, "pretty_name": name}
    if manifest.get("synthetic"):
        meta["tags"] = ["synthetic"]
    released = [s for s, e in manifest["splits"].items() if not e.get("held_back") and e.get("shards")]
    if released:
        meta["task_categories"] = ["image-segmentation", "image-to-text"]
        meta["configs"] = [{"config_name": "default",
                            "data_files": [{"split": s, "path": f"data/{s}/*.parquet"} for s in released]}]
    return meta


SYNTHETIC_NOTE = ("**Synthetic data.** These rows were built from geopixeld's seeded synthetic iSAID-format "
                  "generator, not from aerial imagery: they are for trying the pipeline, not for training or "
                  "evaluating a model.")


def render_card(name: str, license: str, manifest: dict) -> str:
    front = "---\n" + yaml.dump(front_matter(name, license, manifest), Dumper=_FrontMatterDumper, sort_keys=False,
                                allow_unicode=True, width=1 << 20) + "---\n"
    note = f"{SYNTHETIC_NOTE}\n\n" if manifest.get("synthetic") else ""
    return (
        front
        + f"\n# {md_text(name)}\n\n" + note +
        "Grounded conversations over aerial image patches, built by geopixeld from an iSAID-style dataset: each row is "
        "one 800x800 patch with a description whose phrases are `<p> tag </p> [SEG]`, each `[SEG]` grounded to one "
        "mask (an instance, or the union of a group).\n\n"
        f"License: {md_text(license)}. "
        f"Schema version {manifest.get('schema_version')} (docs/dataset-schema.md of geopixeld); row counts and "
        "checksums of every shard are in `_manifest.json`; `geopixeld/` holds the same rows in the released "
        "GeoPixelD JSON layout.\n\n## Statistics\n\n" + stats_table(manifest) + "\n## Loading\n\n"
        "```python\nimport pandas as pd\ndf = pd.read_parquet(\"data/train\")\n\n"
        "from datasets import load_dataset\nds = load_dataset(\"parquet\", data_files={\"train\": \"data/train/*.parquet\"})\n\n"
        "import duckdb\nduckdb.sql(\"select patch_id, len(phrases) from 'data/*/*.parquet'\")\n```\n\n"
        "Masks are COCO RLE: `pycocotools.mask.decode({'size': m['rle']['size'], 'counts': m['rle']['counts']})`.\n"
    )
