"""A real Prefect server for the flow tests: started once per session on a free loopback port with its own
PREFECT_HOME, torn down by pid. In-process flow runs of the tests talk to it too (no temporary server each)."""

import os
import socket
from pathlib import Path

import pytest

from flows import serve


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrefectServer:
    def __init__(self, state: Path):
        self.state = state
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.proc = None

    def start(self):
        self.proc = serve.start_server(self.port, self.state)
        return self

    def env(self) -> dict:
        env = serve.prefect_env(self.port, self.state)
        env["PREFECT_API_URL"] = self.api
        return env

    def stop(self):
        serve.stop(self.state)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    try:
        import prefect  # noqa: F401
    except ImportError:
        pytest.skip("Prefect is not installed (pip install -e '.[flows]')")
    srv = PrefectServer(tmp_path_factory.mktemp("prefect"))
    try:
        srv.start()
    except Exception as exc:  # noqa: BLE001
        srv.stop()
        pytest.fail(f"the Prefect server did not start: {exc}")
    saved = {k: os.environ.get(k) for k in ("PREFECT_API_URL", "PREFECT_HOME", "PREFECT_SERVER_ANALYTICS_ENABLED")}
    os.environ.update({k: srv.env()[k] for k in saved})  # subprocesses and in-process runs of this session use it
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: srv.api}):  # Prefect read its settings when first imported
        yield srv
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    srv.stop()
