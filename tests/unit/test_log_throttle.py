"""One log line per kind per minute, with the count of those held back. Pure (manual clock)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from foundation.clock import ManualClock
from foundation.config import RuntimeSettings
from foundation.log_throttle import LogThrottle, held_back
from foundation.metrics import Metrics
from source_workers.stager import Stager
from source_workers.stats import RuntimeStats
from staging.memory import MemoryStagingProvider
from staging.protocol import StagingContext
from staging.schemas import SchemaCatalog
from tests.helpers import trade_resource


def test_one_line_per_kind_per_window_and_the_count_held_back() -> None:
    clock = ManualClock()
    throttle = LogThrottle(60.0, clock=clock)
    assert throttle.allow("a") == 0
    assert [throttle.allow("a") for _ in range(5)] == [None] * 5
    assert throttle.allow("b") == 0  # another kind is not held back
    clock.advance(61.0)
    assert throttle.allow("a") == 5
    assert throttle.allow("a") is None
    assert held_back(5).startswith(" (5 more like it")
    assert held_back(0) == ""


def test_ten_thousand_garbage_frames_log_one_line_and_count_every_one(
    caplog: pytest.LogCaptureFixture, catalog: SchemaCatalog
) -> None:
    """A hostile feed: every dead letter counted in the metric, one warning line."""
    resource = trade_resource(catalog)
    provider = MemoryStagingProvider(catalog=catalog)
    session = provider.allocate_session(
        StagingContext(source=resource.source, resources=(resource,))
    )
    metrics = Metrics()
    stager = Stager(
        resource.source,
        [resource.name],
        session,
        settings=RuntimeSettings(),
        metrics=metrics,
        stats=RuntimeStats(),
        stopping=asyncio.Event(),
        clock=ManualClock(),
    )
    with caplog.at_level(logging.WARNING, logger="source_workers.stager"):
        for n in range(10_000):
            stager.dead_letter(resource.name, f"garbage {n}", ValueError(f"not JSON {n}"))
    lines = [r for r in caplog.records if "dead-lettered a frame" in r.getMessage()]
    assert len(lines) == 1
    labels = {"source": resource.source, "resource": resource.name}
    assert metrics.value("source_dead_letters_total", labels) == 10_000
    assert stager.stats.dead_letters == 10_000
    asyncio.run(stager.send_letters())
    stager.close()
    session.close()
