"""The build's stages as plain functions over batches of shards: the Prefect flow (flows/build.py) maps tasks over
them, and the overhead benchmark calls them directly. Nothing here knows about Prefect."""

from __future__ import annotations

import errno
import fcntl
import os
import re
import time
from contextlib import contextmanager
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.contracts.categories import Vocabulary
from pipeline.contracts.config import PlanConfig
from pipeline.contracts.grounding import PHRASE
from pipeline.planning.stage import ShardResult, plan_shard
from pipeline.contracts.records import SourceImage
from pipeline.contracts.shards import read_manifest


class OutputNotWritable(OSError):
    """The output folder cannot be written (read-only, full, or not a folder)."""


@contextmanager
def output_lock(out: Path, log=print, poll: float = 2.0):
    """Hold an exclusive lock on the output root for a whole build. Two builds into one folder would race on its
    manifests; the second waits for the first to end (the kernel drops the lock of a killed process)."""
    path = Path(out) / ".geopixeld.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told:
                    log(f"another build holds {path}; waiting for it to end")
                    told = True
                time.sleep(poll)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # closing drops the lock


def batches(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def ensure_source(root: Path, splits: list[str], synthetic: str | None, log=print) -> None:
    """Generate the synthetic demo set at `root` when asked to and it holds no annotations yet."""
    root = Path(root)
    have = [s for s in splits if (root / s / "Annotations").is_dir() or (root / s / "images").is_dir()]
    if len(have) == len(splits):
        return
    if synthetic is None:
        if not root.is_dir():
            raise FileNotFoundError(f"source.root {root}: no such folder (set source.synthetic to generate the demo set)")
        return  # the reader names what is missing
    from pipeline.synthetic.isaid import generate

    log(f"generating the {synthetic} synthetic iSAID-format dataset in {root}")
    generate(root, scale=synthetic, splits=tuple(splits), progress=False)


def check_writable(out: Path) -> None:
    """Create the output root and prove a file can be written and synced there; name the path when not."""
    out = Path(out)
    probe = out / ".geopixeld-write-test"
    try:
        out.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as fh:
            fh.write(b"\0" * 4096)
            fh.flush()
            os.fsync(fh.fileno())
        probe.unlink()
    except OSError as exc:
        why = {errno.EROFS: "read-only file system", errno.ENOSPC: "no space left", errno.EACCES: "permission denied",
               errno.EDQUOT: "disk quota exceeded"}.get(exc.errno, exc.strerror or str(exc))
        raise OutputNotWritable(exc.errno, f"output folder {out} is not writable: {why}") from exc


def plan_batch(batch: list[tuple[int, list[SourceImage]]], cfg: PlanConfig, vocab: Vocabulary,
               split_dir: Path) -> list[ShardResult]:
    """Plan a batch of shards (each written atomically); the caller records them in the manifest."""
    return [plan_shard(k, chunk, cfg, vocab, split_dir) for k, chunk in batch]


def draft_batch(job, names: list[str]) -> list[tuple[str, dict]]:
    """Draft a batch of plan shards with a `draft_run.DraftJob`; returns (record shard, manifest entry) pairs."""
    return [job.draft_shard(n) for n in names]


def validate_records(out: Path, split: str) -> Counter:
    """Check every grounded record again from the files: each `[SEG]` has a phrase whose span holds its tag, each
    mask decodes to the patch size and is not empty. Raises ValueError naming the shard and patch otherwise."""
    from pipeline.contracts import masks

    rec_dir = Path(out) / split / "records"
    manifest = read_manifest(rec_dir)
    if not manifest or not manifest.get("complete"):
        raise ValueError(f"{rec_dir}: records are not finished")
    c = Counter()
    for name in sorted(manifest["shards"]):
        for r in pq.read_table(rec_dir / name, columns=["patch_id", "description", "phrases", "width", "height",
                                                        "status"]).to_pylist():
            c["records"] += 1
            if r["status"] != "ok":
                c["failed"] += 1
                continue
            where = f"{rec_dir / name}, patch {r['patch_id']}"
            found = list(PHRASE.finditer(r["description"]))
            if len(found) != len(r["phrases"]):
                raise ValueError(f"{where}: {len(found)} [SEG] phrases but {len(r['phrases'])} grounded phrases")
            for p in r["phrases"]:
                if r["description"][p["start"]:p["end"]].strip() != p["tag"]:
                    raise ValueError(f"{where}: span {p['start']}:{p['end']} does not hold tag {p['tag']!r}")
                if list(p["rle"]["size"]) != [r["height"], r["width"]]:
                    raise ValueError(f"{where}: mask of {p['tag']!r} is {p['rle']['size']}, not the patch size")
                if masks.area(p["rle"]) == 0:
                    raise ValueError(f"{where}: mask of {p['tag']!r} is empty")
            if re.search(r"</?p>|\[SEG\]", PHRASE.sub("", r["description"])):
                raise ValueError(f"{where}: markup left after removing the grounded phrases")
            c["ok"] += 1
            c["phrases"] += len(r["phrases"])
    return c
