"""The one clock: a manual clock moves only when told, and the code that takes a Clock
follows it (stamps and timers), so tests move time instead of sleeping."""

from __future__ import annotations

import time

import pytest

from foundation.clock import SYSTEM_CLOCK, ManualClock
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
