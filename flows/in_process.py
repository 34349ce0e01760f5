"""Run `build-geopixeld` in this process (`geopixeld build`, `make demo`): Prefect starts a temporary local server
for the run, so no server is needed. Settings are put in place before Prefect is imported."""

import os
from pathlib import Path


def prefect_defaults(state: Path = Path(".geopixeld")) -> None:
    """Keep Prefect's state in the project, its start-up patient on a slow machine, its console quiet."""
    os.environ.setdefault("PREFECT_HOME", str((state / "prefect").resolve()))
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)  # the server's SQLite file goes here
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")  # 20 s default times out here
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # our own summary is printed at the end


def run_build(params) -> dict:
    """Run the flow on validated `BuildParams`; returns the flow's summary."""
    prefect_defaults()
    from flows.build import build_geopixeld

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
    return "\n".join(out) + f"\n{result['task_runs']} task runs; dataset: {result['dataset']}"
