"""Atomic writes: what they return, the mode they give a file, and `check_file`'s verdicts."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.contracts.fileio import atomic_write_bytes, check_file, file_entry
from pipeline.contracts.shards import ShardManifest

ROOT = Path(__file__).resolve().parents[3]


def test_atomic_write_returns_what_a_manifest_keeps(tmp_path):
    data = b"\x89PNG some bytes"
    entry = atomic_write_bytes(tmp_path / "a" / "x.png", data, fsync=False)
    assert entry == file_entry(data) == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert (tmp_path / "a" / "x.png").read_bytes() == data and not list((tmp_path / "a").glob(".*.tmp"))


def test_check_file_says_why_a_file_is_not_the_one_recorded(tmp_path):
    path = tmp_path / "x.png"
    entry = atomic_write_bytes(path, b"abcdef")
    assert check_file(path, entry) is None and check_file(path, None) is None
    path.write_bytes(b"abc")
    assert check_file(path, entry) == "3 bytes, but 6 were written"
    path.write_bytes(b"abcdeX")
    assert "damaged" in check_file(path, entry)
    path.unlink()
    assert check_file(path, entry) == check_file(path, None) == "missing"
    path.mkdir()
    assert check_file(path, None) == "not a regular file"


_WRITE = ("import os, sys; from pathlib import Path; from pipeline.contracts.fileio import atomic_write_bytes; "
          "atomic_write_bytes(Path(sys.argv[1]), b'x'); print(oct(os.stat(sys.argv[1]).st_mode & 0o777))")


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_honour_the_umask(tmp_path, umask, mode):
    """The umask is read once at import, so each case runs in a fresh interpreter started under it."""
    path = tmp_path / "f.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    got = subprocess.run([sys.executable, "-c", _WRITE, str(path)], env=env, capture_output=True, text=True,
                         preexec_fn=lambda: os.umask(umask), check=True)
    assert stat.S_IMODE(path.stat().st_mode) == mode, got.stdout


def test_a_restarted_manifest_removes_every_glob_it_is_given(tmp_path):
    folder = tmp_path / "split" / "plans"
    ShardManifest.open(folder, "k", {"run": 1})
    old = [folder / "plans-00000.parquet", tmp_path / "split/patches/a.png", tmp_path / "split/report.jsonl"]
    keep = tmp_path / "split/patches/notes.txt"
    for p in [*old, keep]:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"old")
    ShardManifest.open(folder, "k", {"run": 2}, on_mismatch="restart",
                       remove=["plans-*.parquet", "../patches/*.png", "../report.jsonl", "../absent/*.png"])
    assert not any(p.exists() for p in old) and keep.exists()
