"""The one clock: monotonic seconds for timers, wall-clock microseconds for what is stamped.

Everything that measures a wait or stamps a time takes a :class:`Clock`: the
source runtime and its stager (reconnect health, linger, shutdown deadlines,
the time a message was received), the staging writers (each record's ingest
time), the readers' idle timers (Kafka and in-memory), and the sink (retry
budgets). Production code gets :data:`SYSTEM_CLOCK`; tests get a
:class:`ManualClock` and move time themselves instead of sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for timers and deadlines)."""
        ...

    def wall_us(self) -> int:
        """Microseconds since the Unix epoch, UTC (for times written into records)."""
        ...


class SystemClock:
    """The machine's clocks: :func:`time.monotonic` and :func:`time.time_ns`."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall_us(self) -> int:
        return time.time_ns() // 1_000


SYSTEM_CLOCK: Clock = SystemClock()


class ManualClock:
    """A clock that moves only when told: :meth:`advance` moves both readings.

    ``step_s`` (default 0) moves it that far after every :meth:`monotonic` reading,
    for code under test that loops until a deadline without waiting itself.
    """

    def __init__(
        self, start_s: float = 0.0, wall_us: int = 1_796_000_000_000_000, step_s: float = 0.0
    ) -> None:
        self._now = start_s
        self._wall_us = wall_us
        self._step = step_s

    def monotonic(self) -> float:
        now = self._now
        if self._step:
            self.advance(self._step)
        return now

    def wall_us(self) -> int:
        return self._wall_us

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a clock does not go back ({seconds} s)")
        self._now += seconds
        self._wall_us += round(seconds * 1_000_000)
