"""The one clock: monotonic seconds for timers, wall-clock microseconds for what is stamped.

Everything that measures a wait or stamps a time takes a :class:`Clock`: the
source runtime and its stager (reconnect health, linger, shutdown deadlines,
the time a message was received), the source transports (the websocket's idle
timer, ``Retry-After`` dates), connectors' helpers (the Coinbase backfill, the
Supabase heartbeat), the staging writers (each record's ingest time), the
readers' idle timers (Kafka and in-memory), and the sink (retry budgets).
Production code gets :data:`SYSTEM_CLOCK`; tests get a :class:`ManualClock`
and move time themselves instead of sleeping.

Asynchronous code that waits does so on the clock too: :meth:`Clock.sleep`, and
:func:`wait_event` (an event, or the clock's seconds, whichever comes first).
On a manual clock those waits end when :meth:`ManualClock.advance` moves time
past them, never by themselves.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import threading
import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for timers and deadlines)."""
        ...

    def wall_us(self) -> int:
        """Microseconds since the Unix epoch, UTC (for times written into records)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time (in a running event loop)."""
        ...


class SystemClock:
    """The machine's clocks: :func:`time.monotonic`, :func:`time.time_ns`, :func:`asyncio.sleep`."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall_us(self) -> int:
        return time.time_ns() // 1_000

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


SYSTEM_CLOCK: Clock = SystemClock()


async def wait_event(clock: Clock, event: asyncio.Event, seconds: float) -> bool:
    """Wait until ``event`` is set or ``seconds`` of ``clock`` passed: True if it was set."""
    if event.is_set():
        return True
    if isinstance(clock, SystemClock):  # the common case, without a second task
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=max(0.0, seconds))
        return event.is_set()
    waiter = asyncio.ensure_future(event.wait())
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait({waiter, timer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (waiter, timer):
            task.cancel()
        await asyncio.gather(waiter, timer, return_exceptions=True)
    return event.is_set()


class ManualClock:
    """A clock that moves only when told: :meth:`advance` moves both readings, and ends
    every :meth:`sleep` whose time it reached.

    ``step_s`` (default 0) moves it that far after every :meth:`monotonic` reading,
    for code under test that loops until a deadline without waiting itself.
    """

    def __init__(
        self, start_s: float = 0.0, wall_us: int = 1_796_000_000_000_000, step_s: float = 0.0
    ) -> None:
        self._now = start_s
        self._wall_us = wall_us
        self._step = step_s
        self._lock = threading.Lock()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def monotonic(self) -> float:
        now = self._now
        if self._step:
            self.advance(self._step)
        return now

    def wall_us(self) -> int:
        return self._wall_us

    async def sleep(self, seconds: float) -> None:
        """Wait until :meth:`advance` moved the clock ``seconds`` on (0 or less: a yield)."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (self._now + seconds, next(self._order), future)
        with self._lock:
            bisect.insort(self._sleepers, entry)
        try:
            await future
        finally:
            with self._lock, contextlib.suppress(ValueError):
                self._sleepers.remove(entry)

    def sleeping(self) -> list[float]:
        """When each waiting :meth:`sleep` ends, soonest first (for tests that step time)."""
        with self._lock:
            return [at for at, _, future in self._sleepers if not future.done()]

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a clock does not go back ({seconds} s)")
        with self._lock:
            self._now += seconds
            self._wall_us += round(seconds * 1_000_000)
            due = [future for at, _, future in self._sleepers if at <= self._now]
        for future in due:
            with contextlib.suppress(RuntimeError):  # its loop closed: nobody waits any more
                future.get_loop().call_soon_threadsafe(_wake, future)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
