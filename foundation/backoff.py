"""The one backoff schedule: capped exponential delays with full jitter, never zero.

Every wait before a retry uses it: the source's reconnects, the stager's
retries of a write or of dead letters, and the sink's retries of an insert.
A value object with injected randomness, so it is tested with plain numbers.

- A retry loop asks :meth:`Backoff.next_delay` after each failure.
- A connection uses :meth:`connected`, :meth:`delivered` and :meth:`failed`:
  a connection that stayed up ``reset_after_s``, or that delivered data,
  resets the schedule the next time it fails. A feed that drops every few
  seconds but delivers in between is reconnected at once, not after delays
  grown to the cap. (A connection that delivers nothing still backs off, so a
  server that accepts and closes is not hammered.)

Pure code.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    initial_s: float = 0.5
    max_s: float = 30.0
    multiplier: float = 2.0
    reset_after_s: float = 60.0
    jitter: Callable[[], float] = field(default=random.random, repr=False)
    """A number in [0, 1): the share of the capped delay actually waited ("full jitter")."""
    attempt: int = 0
    connected_at: float | None = None
    delivering: bool = False
    """The current connection delivered data."""

    def connected(self, now: float) -> None:
        """A connection (or session) started at ``now``."""
        self.connected_at = now
        self.delivering = False

    def delivered(self) -> None:
        """The current connection delivered data: it worked, whatever ends it."""
        self.delivering = True

    def ceiling(self) -> float:
        """The capped delay of the current attempt, before jitter."""
        return min(self.max_s, self.initial_s * self.multiplier**self.attempt)

    def next_delay(self) -> float:
        """How long to wait before the next try, and one step further along the series."""
        ceiling = self.ceiling()
        self.attempt = min(self.attempt + 1, 64)
        # Never zero: half the ceiling at least, so a storm of failures cannot spin.
        return ceiling * (0.5 + 0.5 * self.jitter())

    def failed(self, now: float) -> float:
        """The connection failed at ``now``: how long to wait before the next try."""
        healthy = self.connected_at is not None and now - self.connected_at >= self.reset_after_s
        if healthy or self.delivering:
            self.attempt = 0
        self.connected_at = None
        self.delivering = False
        return self.next_delay()
