"""CallPermits: never more calls in flight than the limit allows, and none while a quota says to hold."""

from __future__ import annotations

import asyncio
import time

from shadowd.adapters.anthropic_client import CallPermits
from shadowd.core.limiter import AdaptiveLimit


async def test_calls_in_flight_never_exceed_the_limit_and_all_finish() -> None:
    permits = CallPermits(AdaptiveLimit(2, min_limit=1))
    most = 0
    done = 0

    async def call() -> None:
        nonlocal most, done
        await permits.acquire()
        most = max(most, permits.in_flight)
        await asyncio.sleep(0.001)
        await permits.release()
        done += 1

    await asyncio.gather(*(call() for _ in range(20)))
    assert (most, done, permits.in_flight, permits.peak_in_flight) == (2, 20, 0, 2)


async def test_a_free_permit_is_taken_at_once_but_never_during_a_quota_hold() -> None:
    permits = CallPermits(AdaptiveLimit(4, min_limit=1))
    ran = asyncio.Event()
    other = asyncio.create_task(asyncio.sleep(0))
    other.add_done_callback(lambda _: ran.set())
    await permits.acquire()  # golden: a free permit, no pacing: taken without yielding to the loop
    assert not ran.is_set()
    await other
    started = time.monotonic()
    # Near miss: permits are free, but the API said to hold off (a quota ran out) for 50 ms.
    permits.limit.hold(time.monotonic(), 0.05)
    await permits.acquire()
    assert time.monotonic() - started >= 0.045
    assert permits.in_flight == 2
