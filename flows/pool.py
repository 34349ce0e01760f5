"""Where a build's work runs: the task runner of the flow and, for local runs, the process pool of its CPU work."""

from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

from flows.params import BuildParams
from pipeline import driver

_POOL: ProcessPoolExecutor | None = None


def current() -> ProcessPoolExecutor | None:
    """The local process pool of the running build (None on a Dask worker or outside a build)."""
    return _POOL


@contextmanager
def local_pool(params: BuildParams):
    """Hold a process pool for the CPU stages of a local build (tasks stay on threads and submit to it)."""
    global _POOL
    if params.task_runner.kind != "local" or params.cpu_workers() == 1:
        yield None
        return
    _POOL = driver.worker_pool(params.cpu_workers())  # workers end with this process
    try:
        yield _POOL
    finally:
        _POOL.shutdown(wait=True, cancel_futures=True)
        _POOL = None


def dask_runner(params: BuildParams):
    """The Dask task runner (prefect-dask) of a `task_runner.kind: dask` build: an existing cluster's address, or a
    LocalCluster. Local builds need none: their tasks run on the flow's threads, their CPU work on `local_pool`."""
    tr = params.task_runner
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as exc:  # pragma: no cover - the flows extra installs it
        raise RuntimeError("task_runner.kind=dask needs prefect-dask: pip install -e '.[flows]'") from exc
    if tr.address:
        return DaskTaskRunner(address=tr.address)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs={"n_workers": tr.dask_workers, "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": None})
