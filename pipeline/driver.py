"""The one stage driver: every shard-by-shard stage runs through `run_stage`, wherever its work runs.

A stage is prepared by its own module (`planning.stage.prepare_plan`, `drafting.stage.open_draft`) into a job:

    job.todo        the units still to do (a rerun leaves out what its manifest says is finished)
    job.work        a picklable callable: a batch of units -> a list of results (it writes its shards atomically)
    job.record(r)   adds one result to the job's manifest (`contracts.shards.ShardManifest`), in this thread
    job.finish()    checks every unit was recorded, marks the manifest complete, returns the stage's summary
    job.in_process  True when the work must run in this thread (LMM drafting keeps its event loop here)

and a runner decides where `job.work` runs: `SERIAL` (this process), `ProcessPool` (the CLI and the
benchmarks), or the Prefect flow's runner (flows/build.py, which submits each batch as a task run). The driver
does the rest the same way for all of them: batching, recording as results arrive, progress, finishing.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import signal
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Iterator, Protocol

from pipeline.contracts.layout import lock_file


class Runner(Protocol):
    def map(self, fn: Callable[[list], list], batches: list[list]) -> Iterator[list]:
        """Run `fn` on every batch; yield each batch's results as it completes (any order)."""

    def map_in_thread(self, fn: Callable[[list], list], batches: list[list]) -> Iterator[list]:
        """The same for work that must run in this thread (`job.in_process`), one batch after the other."""


class Serial:
    """Run each batch here, one after the other."""

    def map(self, fn, batches):
        for b in batches:
            yield fn(b)

    map_in_thread = map


SERIAL = Serial()


_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Pool-worker initializer: the kernel kills this worker when the process that started it ends (Linux
    PR_SET_PDEATHSIG), so a SIGKILLed `geopixeld plan` leaves no workers behind to race its rerun. The parent may
    already be gone before the call took effect: then end now."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # no libc prctl: the parent check below still runs
            pass
    if os.getppid() != parent:
        os._exit(1)


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of spawned worker processes that end with this process (`die_with_parent`). All are started here at
    once: the kernel ties a worker to the thread that started it, and this one holds the pool, whereas a flow's
    task thread that submits first may end before the pool does."""
    pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=die_with_parent,
                               initargs=(os.getpid(),))
    launch = getattr(pool, "_launch_processes", None)  # CPython 3.9+; else they start on the first submits
    if launch is not None:
        launch()
    return pool


class ProcessPool:
    """Run batches on a pool of spawned processes (`workers` <= 1: here). A failing batch cancels the ones not
    started and re-raises; finished shards stay recorded, nothing is half-written."""

    def __init__(self, workers: int):
        self.workers = max(1, workers)
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> "ProcessPool":
        if self.workers > 1:
            self._pool = worker_pool(self.workers)
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def map_in_thread(self, fn, batches):
        return SERIAL.map(fn, batches)

    def map(self, fn, batches):
        if self._pool is None or len(batches) <= 1:
            yield from SERIAL.map(fn, batches)
            return
        pending = {self._pool.submit(fn, b) for b in batches}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    yield f.result()  # re-raises a worker's error (a strict-mode BadRecord, a full disk)
        finally:
            for f in pending:
                f.cancel()


def batches(items: list, size: int) -> list[list]:
    size = max(1, size)
    return [items[i : i + size] for i in range(0, len(items), size)]


def run_stage(job, runner: Runner = SERIAL, batch_size: int = 1, progress: Callable[[int], None] | None = None):
    """Run a prepared job to the end and return its summary (see the module docstring)."""
    run = runner.map_in_thread if job.in_process else runner.map
    for results in run(job.work, batches(list(job.todo), batch_size)):
        for r in results:
            job.record(r)
        if progress:
            progress(len(results))
    return job.finish()


class OutputNotWritable(OSError):
    """The output folder cannot be written (read-only, full, or not a folder)."""


@contextmanager
def output_lock(out: Path, log=print, poll: float = 2.0):
    """Hold an exclusive lock on the output root for a whole build. Two builds into one folder would race on its
    manifests; the second waits for the first to end (the kernel drops the lock of a killed process)."""
    path = lock_file(out)
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
               errno.EDQUOT: "disk quota exceeded", errno.EEXIST: "it is a file, not a folder",
               errno.ENOTDIR: "a folder on its path is a file"}.get(exc.errno, exc.strerror or str(exc))
        raise OutputNotWritable(exc.errno, f"output folder {out} is not writable: {why}") from exc

