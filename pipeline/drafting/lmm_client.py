"""An async client for vLLM's OpenAI-compatible chat API: bounded concurrency, timeouts, retries with
backoff, several endpoints with the load spread across them, and an API key read from the environment.

The key is sent as a bearer token and never appears in a log line or an error message. A request that
still fails after its retries raises `LMMUnavailable`, naming the endpoints and what was tried.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass, field

import httpx

RETRY_STATUS = {408, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Endpoint:
    url: str  # base URL, e.g. http://127.0.0.1:8000 (with or without /v1)
    model: str  # served model name
    api_key_env: str | None = None  # name of the environment variable holding the key

    @property
    def chat_url(self) -> str:
        base = self.url.rstrip("/")
        return (base if base.endswith("/v1") else base + "/v1") + "/chat/completions"

    def headers(self) -> dict[str, str]:
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        return {"Authorization": f"Bearer {key}"} if key else {}


class LMMUnavailable(RuntimeError):
    """No endpoint answered after every retry."""


class LMMRequestError(RuntimeError):
    """The server refused the request itself (4xx other than 408/429): retrying would not help."""


@dataclass
class Reply:
    text: str
    finish_reason: str | None
    usage: dict
    endpoint: str
    attempts: int
    seconds: float


@dataclass
class _State:
    in_flight: dict[str, int] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=dict)


class LMMClient:
    """One client per run; share it between tiers that use the same endpoints."""

    def __init__(self, endpoints: list[Endpoint], max_in_flight: int = 16, timeout: float = 120.0,
                 retries: int = 3, backoff: float = 0.5):
        if not endpoints:
            raise ValueError("at least one LMM endpoint is needed")
        self.endpoints = endpoints
        self.retries, self.backoff = retries, backoff
        self._sem = asyncio.Semaphore(max_in_flight)
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
                                       limits=httpx.Limits(max_connections=max_in_flight * 2))
        self.state = _State({e.url: 0 for e in endpoints}, {e.url: 0 for e in endpoints})
        self._rr = 0

    async def __aenter__(self) -> "LMMClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def _pick(self, avoid: set[str]) -> Endpoint:
        """The endpoint with the fewest requests in flight (round-robin among ties), avoiding recent failures."""
        pool = [e for e in self.endpoints if e.url not in avoid] or self.endpoints
        low = min(self.state.in_flight[e.url] for e in pool)
        ties = [e for e in pool if self.state.in_flight[e.url] == low]
        self._rr += 1
        return ties[self._rr % len(ties)]

    async def chat(self, messages: list[dict], response_format: dict | None = None, **sampling) -> Reply:
        """One chat completion; `sampling` holds max_tokens, temperature, seed and the like."""
        tried: list[str] = []
        failed: set[str] = set()
        t0 = time.perf_counter()
        async with self._sem:
            for attempt in range(self.retries + 1):
                ep = self._pick(failed)
                body = {"model": ep.model, "messages": messages, **sampling}
                if response_format is not None:
                    body["response_format"] = response_format
                self.state.in_flight[ep.url] += 1
                self.state.sent[ep.url] += 1
                try:
                    resp = await self._http.post(ep.chat_url, json=body, headers=ep.headers())
                except httpx.TransportError as exc:
                    tried.append(f"{ep.url}: {type(exc).__name__}")
                    failed.add(ep.url)
                else:
                    if resp.status_code == 200:
                        data = resp.json()
                        choice = data["choices"][0]
                        return Reply(choice["message"].get("content") or "", choice.get("finish_reason"),
                                     data.get("usage") or {}, ep.url, attempt + 1, time.perf_counter() - t0)
                    detail = resp.text[:300]
                    if resp.status_code not in RETRY_STATUS:
                        raise LMMRequestError(f"{ep.chat_url} refused the request: HTTP {resp.status_code}: {detail}")
                    tried.append(f"{ep.url}: HTTP {resp.status_code}")
                    failed.add(ep.url)
                finally:
                    self.state.in_flight[ep.url] -= 1
                if len(failed) == len(self.endpoints):
                    failed.clear()
                if attempt < self.retries:
                    await asyncio.sleep(self.backoff * 2**attempt * (0.5 + random.random()))
        raise LMMUnavailable(
            f"no LMM endpoint answered after {len(tried)} attempt(s) over {time.perf_counter() - t0:.1f} s: "
            + "; ".join(tried)
        )
