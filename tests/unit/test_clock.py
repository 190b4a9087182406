"""The one clock: a manual clock moves only when told, and the code that takes a Clock
follows it (stamps and timers), so tests move time instead of sleeping."""

from __future__ import annotations

import asyncio
import time

import pytest

from foundation.clock import SYSTEM_CLOCK, ManualClock, wait_event
from staging.envelope import H_INGESTTIME
from staging.memory import MemoryStagingProvider
from staging.protocol import StagingContext
from staging.schemas import SchemaCatalog
from staging.times import rfc3339
from tests.helpers import trade_resource, trades, unique


def test_a_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock(start_s=10.0, wall_us=1_000_000)
    assert (clock.monotonic(), clock.wall_us()) == (10.0, 1_000_000)
    clock.advance(1.5)
    assert (clock.monotonic(), clock.wall_us()) == (11.5, 2_500_000)
    with pytest.raises(ValueError, match="does not go back"):
        clock.advance(-1)
    stepping = ManualClock(step_s=5)
    assert [stepping.monotonic() for _ in range(3)] == [0.0, 5.0, 10.0]


def test_the_system_clock_reads_the_machines_clocks() -> None:
    before = time.time_ns() // 1_000
    assert before <= SYSTEM_CLOCK.wall_us() <= time.time_ns() // 1_000
    assert SYSTEM_CLOCK.monotonic() <= time.monotonic()


def test_staging_stamps_and_idles_by_the_clock_it_is_given(catalog: SchemaCatalog) -> None:
    """Records carry the clock's wall time as their ingest time, and a reader's idle
    timeout counts the clock's seconds: 60 idle seconds pass in a few polls."""
    clock = ManualClock(wall_us=1_796_000_000_123_456, step_s=1.0)
    provider = MemoryStagingProvider(catalog=catalog, clock=clock)
    resource = trade_resource(catalog)
    context = StagingContext(source=resource.source, resources=(resource,), group_id=unique("g"))
    with provider.allocate_session(context) as session:
        session.writer().write_batch(trades(3))
        reader = session.reader()
        started = time.monotonic()
        batches = list(reader.iter_batches(10, idle_timeout_s=60.0))
        assert time.monotonic() - started < 5  # about 60 polls of 10 ms, not 60 s
    (record, *_) = [r for b in batches for r in b.records]
    assert dict(record.headers)[H_INGESTTIME] == rfc3339(1_796_000_000_123_456).encode()


async def turns() -> None:
    """A few turns of the event loop (a woken sleep ends on the turn after its wake-up)."""
    for _ in range(3):
        await asyncio.sleep(0)


def test_a_manual_clock_ends_a_sleep_only_when_moved_past_it() -> None:
    """Clock.sleep on a manual clock: nothing ends by itself; advance ends each sleep whose
    time it reached, in any order of registration; wait_event is the event or the time."""

    async def main() -> None:
        clock = ManualClock()
        short = asyncio.ensure_future(clock.sleep(5))
        long = asyncio.ensure_future(clock.sleep(10))
        await turns()
        assert clock.sleeping() == [5.0, 10.0]
        clock.advance(4.9)
        await turns()
        assert not short.done() and not long.done()
        clock.advance(0.1)
        await turns()
        assert short.done() and not long.done()
        clock.advance(5)
        await long
        assert clock.sleeping() == []

        event = asyncio.Event()
        waiting = asyncio.ensure_future(wait_event(clock, event, 3))
        await turns()
        event.set()
        assert await waiting is True
        timing_out = asyncio.ensure_future(wait_event(clock, asyncio.Event(), 3))
        await turns()
        clock.advance(3)
        assert await timing_out is False

    asyncio.run(asyncio.wait_for(main(), 5))


def test_the_system_clock_sleeps_and_waits_in_real_time() -> None:
    """wait_event on the system clock: an event already set answers at once; else the timeout."""

    async def main() -> None:
        event = asyncio.Event()
        event.set()
        assert await wait_event(SYSTEM_CLOCK, event, 60) is True
        started = time.monotonic()
        assert await wait_event(SYSTEM_CLOCK, asyncio.Event(), 0.01) is False
        await SYSTEM_CLOCK.sleep(0.01)
        assert time.monotonic() - started >= 0.02

    asyncio.run(main())
