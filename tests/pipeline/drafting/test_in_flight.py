"""Requests in flight are sized from the endpoints, so a GPU server's batch (its --max-num-seqs) stays full."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.drafting.lmm_client import Endpoint
from pipeline.drafting.lmm_drafter import IN_FLIGHT_PER_ENDPOINT, Drafting, LMMSettings
from pipeline.drafting.reply_cache import ReplyCache


def test_each_pool_gets_its_servers_batches_unless_capped(tmp_path):
    a, b, m = (Endpoint(f"http://{h}:8000", "x") for h in ("a", "b", "m"))

    async def sizes(settings):
        d = Drafting(settings, ReplyCache(tmp_path / "c.sqlite"))
        try:
            return {t: (c._sem._value, d.gates[id(c)]._free) for t, c in d.clients.items()}
        finally:
            await d.aclose()

    got = asyncio.run(sizes(LMMSettings([a, b], merge_endpoints=[m])))
    assert got["holistic"] == got["group"] == (2 * IN_FLIGHT_PER_ENDPOINT,) * 2 and IN_FLIGHT_PER_ENDPOINT == 512
    assert got["merge"] == (IN_FLIGHT_PER_ENDPOINT,) * 2  # its own server, its own batch
    assert asyncio.run(sizes(LMMSettings([a, b], in_flight_per_endpoint=64)))["instance"] == (128, 128)
    assert asyncio.run(sizes(LMMSettings([a, b], max_in_flight=8)))["instance"] == (8, 8)  # a cap wins
    with pytest.raises(ValueError, match="in_flight_per_endpoint=0"):
        LMMSettings([a], in_flight_per_endpoint=0)
