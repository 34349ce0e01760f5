"""The dataset card (README.md of a built dataset): Hugging Face metadata, statistics beside the paper's, and
how to load the files. Rendered from the dataset manifest only, so it always matches what was written."""

from __future__ import annotations

import hashlib

import yaml

from pipeline.contracts.markdown import md_text
from pipeline.contracts.paper import PAPER, PAPER_PER_PATCH, PER_PATCH_ROWS, per_patch

def _fmt(v, digits: int = 0) -> str:
    if v is None:
        return "–"
    return f"{v:,.{digits}f}" if isinstance(v, (int, float)) else str(v)


def _counts(s: dict, prefix: str) -> str:
    """`name count, ...` of the statistics keyed `<prefix><name>` (names come from the records: escaped)."""
    return ", ".join(f"{md_text(k[len(prefix):])} {v:,}" for k, v in sorted(s.items()) if k.startswith(prefix))


def _heading(split: str, entry: dict) -> str:
    source = entry.get("source_split")
    return f"### {split}" + (f" (from the source's `{md_text(source)}` split)" if source and source != split else "")


def stats_table(manifest: dict) -> str:
    """One table per split: this build's per-patch ratios beside GeoPixelD's (absolute counts of a small build
    beside the paper's say little; the ratios say whether the tier rule gives GeoPixelD's mix)."""
    parts = []
    for split, entry in manifest["splits"].items():
        if entry.get("held_back"):
            parts.append(f"{_heading(split, entry)}\n\nNot released yet ({entry['held_back']}).\n")
            continue
        s = entry.get("stats", {})
        ours = per_patch({"kept": s.get("patches", 0), "instances": s.get("instance", 0), "groups": s.get("group", 0),
                          "objects": s.get("objects", 0), "group_objects": s.get("group_objects", 0)})
        chars = s.get("caption_chars", 0) / s["patches"] if s.get("patches") else None
        which = split if split in PAPER else "train"
        lines = [_heading(split, entry), "", "| per patch | this build | GeoPixelD train (paper) |", "|---|---:|---:|"]
        lines += [f"| {label} | {_fmt(ours[k], 2)} | {_fmt(PAPER_PER_PATCH[k], 2)} |" for k, label in PER_PATCH_ROWS]
        lines.append(f"| mean description length (characters; paper: GeoPixelD {which}) | {_fmt(chars)} | "
                     f"{_fmt(PAPER[which]['caption_chars'])} |")
        # drafter names and curation statuses come from the records: escaped like every text from data
        drafters, curation = _counts(s, "drafter: "), _counts(s, "curation: ")
        lines += ["", f"Counts: {s.get('patches', 0):,} patches, {s.get('instance', 0):,} instance and "
                      f"{s.get('group', 0):,} group phrases ({s.get('phrases', 0):,} grounded phrases), "
                      f"{s.get('objects', 0):,} objects covered by the masks.",
                  f"{s.get('records', 0):,} patches drafted; {s.get('failed', 0):,} failed grounding and "
                  f"{s.get('rejected', 0):,} were rejected by curators (both left out); "
                  f"{s.get('dropped', 0):,} planned instances or groups were dropped from descriptions "
                  "(listed per row in `dropped`).",
                  f"Drafted by: {drafters or '–'}. Curation: {curation or '–'}."]
        lines.append(verification_line(s, entry.get("verification")))
        if "phrases_accepted" in entry:
            lines.append(f"Curated phrases: {entry['phrases_accepted']:,} accepted, {entry['phrases_edited']:,} edited, "
                         f"{entry['phrases_rejected']:,} rejected.")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def verification_line(s: dict, verification: dict | None) -> str:
    """How many released patches the verification flagged, per check and per tier (docs/verification.md)."""
    if not s.get("verified"):
        return "Verification: not run (`geopixeld verify`)."
    checks, tiers = _counts(s, "flag check: "), _counts(s, "flag tier: ")
    policy = f" (policy {md_text(verification['policy'])})" if verification else ""
    line = f"Verification{policy}: {s.get('flagged', 0):,} of {s['verified']:,} released patches flagged"
    return line + (f"; failed checks by check: {checks}; by tier: {tiers}." if checks else ".")


def splits_note(manifest: dict) -> str:
    """Which source split each released split comes from (GeoPixelD releases iSAID-val as `test`)."""
    pairs = [(s, e.get("source_split")) for s, e in manifest["splits"].items()]
    named = [f"`{md_text(s)}` from `{md_text(src)}`" for s, src in pairs if src]
    if not named:
        return ""
    return ("Splits: " + ", ".join(named) + " (`source.split_folders`; GeoPixelD releases iSAID-train as `train` and "
            "iSAID-val as `test`).\n\n")


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
    released = released_splits(manifest)
    if released:
        meta["task_categories"] = ["image-segmentation", "image-to-text"]
        # `datasets` keys a folder's cache on this config (not on the files): the fingerprint makes a rebuild
        # with other rows load those rows instead of the cached ones
        meta["configs"] = [{"config_name": "default", "description": f"geopixeld rows {rows_fingerprint(manifest)}",
                            "data_files": [{"split": s, "path": f"data/{s}/*.parquet"} for s in released]}]
    return meta


def released_splits(manifest: dict) -> list[str]:
    return [s for s, e in manifest["splits"].items() if not e.get("held_back") and e.get("shards")]


def rows_fingerprint(manifest: dict) -> str:
    """A hash of every released shard's name and sha256: it changes whenever any released row does."""
    h = hashlib.sha256()
    for split in released_splits(manifest):
        for name, entry in sorted(manifest["splits"][split]["shards"].items()):
            h.update(f"{name}\t{entry['sha256']}\n".encode())
    return h.hexdigest()[:16]


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
        "GeoPixelD JSON layout.\n\n## Statistics\n\n" + splits_note(manifest) + stats_table(manifest) + "\n## Loading\n\n"
        "```python\nfrom datasets import load_dataset\nds = load_dataset(\"path/to/this/folder\")   # the splits named in this "
        "card's `configs`\n\nimport pandas as pd\ndf = pd.read_parquet(\"data/train\")\n\n"
        "import duckdb\nduckdb.sql(\"select patch_id, len(phrases) from 'data/*/*.parquet'\")\n```\n\n"
        "`datasets` caches a folder's rows under the folder's name, the config name and a hash of this card's "
        "`configs` entry, not of the files; that entry's description carries a fingerprint of every released "
        f"shard's sha256 (`geopixeld rows {rows_fingerprint(manifest)}`), so after a rebuild into the same folder "
        "the recipe loads the new rows. `load_dataset(\"parquet\", data_files=...)` keys its cache on each file's "
        "path and modification time instead.\n\n"
        "Masks are COCO RLE: `pycocotools.mask.decode({'size': m['rle']['size'], 'counts': m['rle']['counts']})`.\n"
    )
