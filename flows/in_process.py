"""Run `build-geopixeld` in this process (`geopixeld build`, `make demo`): Prefect starts a temporary local server
for the run, so no server is needed. Settings are put in place before Prefect is imported."""

import logging
import os
from pathlib import Path

from pipeline.contracts.cli_errors import debug_enabled


def prefect_defaults(state: Path = Path(".geopixeld")) -> None:
    """Keep Prefect's state in the project, its start-up patient on a slow machine, its console quiet."""
    os.environ.setdefault("PREFECT_HOME", str((state / "prefect").resolve()))
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)  # the server's SQLite file goes here
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")  # 20 s default times out here
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # our own summary is printed at the end


class _NoTracebacks(logging.Filter):
    """Prefect logs the traceback of a failed task or flow; the CLI already says the error in one line naming the
    file, so its tracebacks are shown only with `--debug` (GEOPIXELD_DEBUG=1)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and not debug_enabled():
            record.exc_info, record.exc_text = None, None
        return True


def _quiet_prefect_tracebacks() -> None:
    """Put the filter on every handler of Prefect's loggers (a filter on a logger misses its children's records)."""
    quiet = _NoTracebacks()
    names = ["prefect"] + [n for n in logging.root.manager.loggerDict if n.startswith("prefect.")]
    for handler in {h for n in names for h in logging.getLogger(n).handlers}:
        if not any(isinstance(f, _NoTracebacks) for f in handler.filters):
            handler.addFilter(quiet)


def run_build(params) -> dict:
    """Run the flow on validated `BuildParams`; returns the flow's summary."""
    prefect_defaults()
    from flows.build import build_geopixeld

    _quiet_prefect_tracebacks()
    return build_geopixeld(params)


def summary_table(result: dict) -> str:
    """The per-stage table of a finished build, for the terminal."""
    rows = result["stages"]
    keys = ["split", "stage", "seconds"] + [k for k in dict.fromkeys(k for r in rows for k in r)
                                             if k not in ("split", "stage", "seconds")]
    keys = [k for k in keys if any(r.get(k) not in (None, "", 0) for r in rows) or k in ("split", "stage", "seconds")]
    width = {k: max(len(k), *(len(str(r.get(k, ""))) for r in rows)) for k in keys}
    line = lambda vals: "  ".join(str(v).ljust(width[k]) for k, v in zip(keys, vals))  # noqa: E731
    out = [line(keys)] + [line([r.get(k, "") for k in keys]) for r in rows]
    tail = f"\n{result['task_runs']} task runs; dataset: {result['dataset']}"
    if result.get("synthetic"):  # never let demo data pass for a real build
        tail += "\nSYNTHETIC DATA: built from the demo generator's images, not real imagery (the card says so too)"
    return "\n".join(out) + tail
