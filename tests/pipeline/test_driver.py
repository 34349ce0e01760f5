"""The stage driver: every batch recorded as it completes, in-thread work kept in the thread, a failing batch
stopping the stage with finished shards kept; the output lock and the write probe."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from functools import partial

import pytest

from pipeline import driver


class Job:
    """A stage job as the driver sees it (planning.stage.PlanJob, drafting.stage.DraftJob have the same shape)."""

    def __init__(self, todo, in_process=False, fail_on=None):
        self.todo, self.in_process = todo, in_process
        self.work = partial(work, fail_on=fail_on)
        self.recorded, self.finished = [], False

    def record(self, r):
        self.recorded.append(r)

    def finish(self):
        self.finished = True
        return sorted(self.recorded)


def work(batch, fail_on=None):
    if fail_on in batch:
        raise ValueError(f"unit {fail_on} is bad")
    return [(u, os.getpid(), threading.get_ident()) for u in batch]


def test_every_unit_is_recorded_once_and_progress_counts_them():
    seen = []
    job = Job(list(range(7)))
    with driver.ProcessPool(2) as pool:
        out = driver.run_stage(job, pool, batch_size=3, progress=seen.append)
    assert [u for u, *_ in out] == list(range(7)) and job.finished
    assert sorted(seen) == [1, 3, 3]
    assert {pid for _, pid, _ in out} != {os.getpid()}  # the work ran in the pool's processes


def test_in_process_work_stays_in_this_thread():
    job = Job(list(range(4)), in_process=True)
    with driver.ProcessPool(2) as pool:
        out = driver.run_stage(job, pool, batch_size=1)
    assert {(pid, tid) for _, pid, tid in out} == {(os.getpid(), threading.get_ident())}


def test_a_failing_batch_stops_the_stage_unfinished():
    job = Job(list(range(6)), fail_on=4)
    with pytest.raises(ValueError, match="unit 4 is bad"):
        driver.run_stage(job, driver.SERIAL, batch_size=2)
    assert [u for u, *_ in job.recorded] == [0, 1, 2, 3] and not job.finished


def test_batches_keep_order_and_size():
    assert driver.batches(list(range(5)), 2) == [[0, 1], [2, 3], [4]]
    assert driver.batches([], 3) == [] and driver.batches([1], 0) == [[1]]


def test_a_second_build_of_the_same_output_waits_for_the_first(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, '.'); from pipeline.driver import output_lock\n"
        f"with output_lock({str(tmp_path)!r}):\n    print('held', flush=True); time.sleep(2)")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    told = []
    t0 = time.monotonic()
    with driver.output_lock(tmp_path, log=told.append, poll=0.1):
        waited = time.monotonic() - t0
    holder.wait(10)
    assert told and "waiting" in told[0] and waited > 0.5


def test_the_write_probe_names_a_folder_it_cannot_create(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(driver.OutputNotWritable, match=str(blocker / "out")):
        driver.check_writable(blocker / "out")


def test_a_worker_whose_parent_is_already_gone_ends_at_once(tmp_path):
    """The initializer's parent check: a worker started as its parent died must not live on."""
    res = subprocess.run([sys.executable, "-c", "from pipeline.driver import die_with_parent\n"
                          "die_with_parent(1)\nprint('lived on')"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 1 and "lived on" not in res.stdout


@pytest.mark.slow
def test_plan_workers_end_with_a_killed_parent(tmp_path):
    """SIGKILL of `geopixeld plan` (no chance to shut its pool down): its workers, busy on a shard each for
    seconds, are gone at once, so nothing writes into OUT behind a rerun's back."""
    import signal

    import psutil

    from pipeline.synthetic.isaid import generate

    generate(tmp_path / "data", scale="small", seed=0, splits=("val",), progress=False)  # 12 images
    plan = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "plan", str(tmp_path / "data"), str(tmp_path / "out"),
                             "--split", "val", "--workers", "2", "--shard-images", "6", "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parent = psutil.Process(plan.pid)
    deadline = time.monotonic() + 30
    workers = []
    while len(workers) < 2 and time.monotonic() < deadline:
        workers = [c for c in parent.children() if "multiprocessing" in " ".join(c.cmdline()) and
                   "resource_tracker" not in " ".join(c.cmdline())]
        time.sleep(0.1)
    assert len(workers) == 2, "the plan never started its two workers"
    time.sleep(1.0)  # into their shards (each takes a few seconds)
    assert not list((tmp_path / "out/val/plans").glob("plans-*.parquet"))  # still working when killed
    os.kill(plan.pid, signal.SIGKILL)
    plan.wait(10)

    def gone(p):
        try:
            return p.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    deadline = time.monotonic() + 2.0
    while not all(gone(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = [w.pid for w in workers if not gone(w)]
    for pid in alive:  # do not leave them behind when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not alive, f"workers {alive} outlived their killed parent"
