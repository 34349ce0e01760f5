"""The order drafting sends requests in: earlier patches first, so a patch's merge does not queue behind the
whole shard (pipeline.drafting.lmm_drafter.PriorityGate). Pure asyncio, no server."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.drafting.lmm_drafter import PriorityGate


def test_waiters_are_let_in_by_priority_then_arrival():
    async def go():
        gate, order = PriorityGate(1), []
        await gate.acquire((0,))  # the one slot is taken: everyone below waits

        async def want(name, prio):
            async with gate.slot(prio):
                order.append(name)

        tasks = [asyncio.create_task(want(n, p)) for n, p in
                 [("late patch a", (5,)), ("early merge", (1,)), ("late patch b", (5,)), ("earliest", (0,))]]
        await asyncio.sleep(0)  # all four are queued
        gate.release()
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(go()) == ["earliest", "early merge", "late patch a", "late patch b"]


def test_never_more_holders_than_slots_and_cancelled_waiters_give_way():
    async def go():
        gate, held, peak = PriorityGate(2), 0, 0

        async def work(prio):
            nonlocal held, peak
            async with gate.slot(prio):
                held += 1
                peak = max(peak, held)
                await asyncio.sleep(0.01)
                held -= 1

        tasks = [asyncio.create_task(work((i % 3,))) for i in range(12)]
        await asyncio.sleep(0)
        tasks[5].cancel()  # a waiter cancelled while queued (a failed shard cancels its patches)
        done = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(done[5], asyncio.CancelledError)
        async with gate.slot((0,)):  # both slots came back
            async with gate.slot((0,)):
                pass
        return peak

    assert asyncio.run(go()) == 2


def test_a_waiter_let_in_then_cancelled_passes_its_slot_on():
    async def go():
        gate = PriorityGate(1)
        await gate.acquire(())
        first = asyncio.create_task(gate.acquire((0,)))
        second = asyncio.create_task(gate.acquire((1,)))
        await asyncio.sleep(0)
        gate.release()  # hands the slot to `first` ...
        first.cancel()  # ... which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await first
        await asyncio.wait_for(second, 1)  # the slot went on to `second`, not lost

    asyncio.run(go())
