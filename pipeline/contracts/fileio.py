"""Files at the edges: names checked to stay inside their root, and atomic writes, so a killed run never leaves a
half-written file under a name a manifest points at."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class UnsafePath(ValueError):
    """A file name that points outside the dataset root."""


def resolve_inside(root: Path, rel: str) -> Path:
    """Resolve `rel` under `root`, refusing absolute names, `..` escapes and links that lead outside."""
    if not rel or os.path.isabs(rel) or rel.startswith(("/", "\\")) or (len(rel) > 1 and rel[1] == ":"):
        raise UnsafePath(f"file name {rel!r} is absolute; names must be relative to the dataset root")
    root_real = Path(os.path.realpath(root))
    candidate = Path(root) / rel
    real = Path(os.path.realpath(candidate))
    if root_real != real and root_real not in real.parents:
        reason = "a link that leads" if ".." not in Path(rel).parts else "a '..' path that leads"
        raise UnsafePath(f"file name {rel!r} is {reason} outside the dataset root {root}")
    return real


def atomic_write_bytes(path: Path, data: bytes, fsync: bool = True) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over the target.

    A killed process never leaves a half-written file under the target name. `fsync=False` skips the
    per-file flush for bulk outputs (patch PNGs) whose owner syncs once per batch (`sync_outputs`).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write {path}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OSError(exc.errno, f"cannot write {path}: {exc.strerror}") from exc  # a full disk says which file
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sync_outputs() -> None:
    """Flush written files to disk once per batch, before the record that points at them is committed."""
    os.sync()
