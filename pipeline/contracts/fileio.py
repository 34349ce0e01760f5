"""Files at the edges: names checked to stay inside their root, and atomic writes, so a killed run never leaves a
half-written file under a name a manifest points at, and size + sha256 of what was written, so a manifest can
name every file it trusts and a rerun can check them."""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path


def _read_umask() -> int:
    """The process umask, without setting it (Linux: /proc); else set and restore it once, at import."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)  # only at import, before any thread of ours writes a file
    os.umask(old)
    return old


# mkstemp creates 0600 files; the final file gets the mode a plain open() would give it, so a shared dataset
# folder is readable by whoever the umask lets read it
FILE_MODE = 0o666 & ~_read_umask()


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


def file_entry(data: bytes) -> dict:
    """What a manifest keeps of a written file: {"size", "sha256"} (pure)."""
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def path_kind(path: Path) -> str:
    """'regular', 'missing', or what else the path is (a FIFO, socket, device or folder), found with stat only:
    opening a FIFO blocks for ever, so nothing is opened before this says 'regular'."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    except (OSError, ValueError) as exc:
        return f"unreadable ({exc})"
    if stat.S_ISREG(mode):
        return "regular"
    for test, kind in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return kind
    return "not a regular file"


def check_file(path: Path, entry: dict | None) -> str | None:
    """Why `path` is not the file a manifest recorded (`entry`: {"size", "sha256"}), or None when it is.

    The size (when the entry has one) is checked first and the hash only when the size matches, so a missing or
    truncated file costs no read. Without an entry the file must still exist and be a regular file."""
    kind = path_kind(path)
    if kind == "missing" or kind.startswith("unreadable"):
        return kind
    if kind != "regular":
        return "not a regular file"
    if entry is None:
        return None
    if "size" in entry and (size := os.stat(path).st_size) != entry["size"]:
        return f"{size} bytes, but {entry['size']} were written"
    try:
        if sha256_file(path) != entry["sha256"]:
            return "damaged (its sha256 differs from the one recorded when it was written)"
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    return None


def atomic_write_bytes(path: Path, data: bytes, fsync: bool = True) -> dict:
    """Write to a temporary file in the same folder, fsync, then rename over the target; returns `file_entry`.

    A killed process never leaves a half-written file under the target name. `fsync=False` skips the
    per-file flush for bulk outputs (patch PNGs) whose owner syncs once per batch (`sync_outputs`). The file
    gets `FILE_MODE` (0o666 less the umask), as `open()` would give it.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write {path}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), FILE_MODE)
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
    return file_entry(data)


def remove_unnamed(folder: Path, keep: set[Path]) -> list[Path]:
    """Delete the files of `folder` not in `keep`; returns them. For folders a stage owns (the release's images
    and GeoPixelD files), so they hold exactly what their manifest and index name."""
    gone = [p for p in sorted(folder.iterdir()) if p.is_file() and p not in keep] if folder.is_dir() else []
    for p in gone:
        p.unlink()
    return gone


def sync_outputs() -> None:
    """Flush written files to disk once per batch, before the record that points at them is committed."""
    os.sync()
