"""`make serve` / `make stop`: a local Prefect server and the served `build-geopixeld/<name>` deployment.

    python -m flows.serve start [--name demo] [--params my-build.yaml] [--port 4200]   # both in the background
    python -m flows.serve stop
    python -m flows.serve serve --name demo [--params F]                               # serve in the foreground

State (the server's SQLite database, logs, pid files) lives in `.geopixeld/prefect/` of the project; set
PREFECT_SERVER_DATABASE_CONNECTION_URL=postgresql+asyncpg://... to keep the server's database in PostgreSQL
instead, or PREFECT_API_URL to serve against a server that runs elsewhere (then none is started here).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

STATE = Path(os.environ.get("GEOPIXELD_STATE", ".geopixeld")) / "prefect"
FLOW = "build-geopixeld"


def prefect_env(port: int, state: Path = STATE) -> dict:
    """Environment of the server, the serving process and the `prefect` CLI calls against them."""
    env = dict(os.environ)
    env.setdefault("PREFECT_API_URL", f"http://127.0.0.1:{port}/api")
    env["PREFECT_HOME"] = str(state.resolve())
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env["PREFECT_RUNNER_POLL_FREQUENCY"] = env.get("PREFECT_RUNNER_POLL_FREQUENCY", "2")  # the 10 s default delays pick-up
    return env


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except Exception:  # noqa: BLE001 - any failure means "not yet"
        return 0


def wait_for(url: str, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _get(url) == 200:
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}; see {log}")
        time.sleep(0.5)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s ({url}); see {log}")


def _spawn(cmd: list[str], env: dict, log: Path, pid_file: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    pid_file.write_text(str(proc.pid))
    return proc


def start_server(port: int, state: Path = STATE, timeout: float = 180) -> subprocess.Popen:
    """A Prefect server on 127.0.0.1:port in its own process group (SQLite in `state`), once it answers."""
    env = prefect_env(port, state)
    env["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
    api = env["PREFECT_API_URL"]
    if _get(f"{api}/health") == 200:
        raise RuntimeError(f"something already answers on {api}; `make stop` or choose another PREFECT_PORT")
    bin_dir = Path(sys.executable).parent
    server = _spawn([str(bin_dir / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                    env, state / "server.log", state / "server.pid")
    wait_for(f"{api}/health", timeout, "the Prefect server", server, state / "server.log")
    return server


def start_serving(name: str, params: str | None, api: str, state: Path = STATE, timeout: float = 180) -> subprocess.Popen:
    """The process serving build-geopixeld/<name> against `api`, once the deployment is registered."""
    env = prefect_env(0, state)
    env["PREFECT_API_URL"] = api
    cmd = [sys.executable, "-m", "flows.serve", "serve", "--name", name] + (["--params", str(params)] if params else [])
    runner = _spawn(cmd, env, state / "serve.log", state / "serve.pid")
    wait_for(f"{api}/deployments/name/{FLOW}/{name}", timeout, f"the {FLOW}/{name} deployment", runner, state / "serve.log")
    return runner


def start(name: str, params: str | None, port: int, state: Path = STATE, timeout: float = 180) -> dict:
    """Start the server (unless PREFECT_API_URL points elsewhere) and the serving process, in the background."""
    state.mkdir(parents=True, exist_ok=True)
    api = os.environ.get("PREFECT_API_URL") or f"http://127.0.0.1:{port}/api"
    pids = {}
    if "PREFECT_API_URL" not in os.environ:
        pids["server"] = start_server(port, state, timeout).pid
    pids["serve"] = start_serving(name, params, api.rstrip("/"), state, timeout).pid
    return {"api": api.rstrip("/"), "pids": pids}


def stop_pid(pid: int, timeout: float = 30) -> None:
    """SIGTERM a process group started by `_spawn`, SIGKILL it if it outlives `timeout`."""
    try:
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            os.killpg(pid, 0)
            time.sleep(0.2)
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it when it is our child
    except ChildProcessError:
        pass


def stop(state: Path = STATE, timeout: float = 30) -> list[str]:
    """Stop the serving process first (a run in progress is marked cancelled), then the server."""
    stopped = []
    for what in ("serve", "server"):
        pid_file = state / f"{what}.pid"
        if not pid_file.exists():
            continue
        pid = int(pid_file.read_text())
        stop_pid(pid, timeout)
        pid_file.unlink()
        stopped.append(f"{what} (pid {pid})")
    return stopped


def load_params(path: str | None):
    """The deployment's default parameters: the demo's (`DEMO`: synthetic, said so), or a YAML/JSON file
    validated now (not at run time)."""
    import copy

    from flows.params import DEMO, BuildParams
    from pipeline.contracts.config import load_config_file

    data = load_config_file(Path(path)) if path else copy.deepcopy(DEMO)
    return BuildParams.model_validate(data)


def serve(name: str, params: str | None) -> None:
    from prefect import serve as prefect_serve

    from flows.build import build_geopixeld

    p = load_params(params)
    dep = build_geopixeld.to_deployment(
        name=name, parameters={"params": json.loads(p.model_dump_json(exclude_defaults=True))},
        description="Build a GeoPixelD-style dataset (geopixeld). Parameters: one `params` object; see docs/flows.md.")
    prefect_serve(dep, pause_on_shutdown=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flows.serve", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for cmd in ("start", "serve"):
        p = sub.add_parser(cmd)
        p.add_argument("--name", default="demo", help="deployment name (build-geopixeld/<name>)")
        p.add_argument("--params", default=None, help="YAML/JSON file of build parameters (default: the demo build)")
        if cmd == "start":
            p.add_argument("--port", type=int, default=int(os.environ.get("PREFECT_PORT", 4200)))
    sub.add_parser("stop")
    a = ap.parse_args(argv)
    if a.cmd == "stop":
        stopped = stop()
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        return 0
    if a.cmd == "serve":
        serve(a.name, a.params)
        return 0
    try:
        load_params(a.params)  # refuse a bad parameter file before anything starts
        info = start(a.name, a.params, a.port)
    except Exception as exc:  # noqa: BLE001
        stop()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    api = info["api"]
    print(f"Prefect server: {api.removesuffix('/api')} (UI)  ·  serving {FLOW}/{a.name}  ·  logs in {STATE}/\n"
          f"Run it:  PREFECT_API_URL={api} .venv/bin/prefect deployment run {FLOW}/{a.name} --watch\n"
          f"Stop:    make stop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
