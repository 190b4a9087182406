"""Reconnect delays: capped exponential backoff with full jitter, reset when healthy.

A value object with injected time and randomness, so it is tested with plain
numbers. ``failed(now)`` gives the next delay; ``connected(now)`` marks the
start of a connection; a connection that stayed up ``reset_after_s`` resets
the schedule the next time it fails. Pure code.
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

    def connected(self, now: float) -> None:
        """A connection (or session) started at ``now``."""
        self.connected_at = now

    def ceiling(self) -> float:
        """The capped delay of the current attempt, before jitter."""
        return min(self.max_s, self.initial_s * self.multiplier**self.attempt)

    def failed(self, now: float) -> float:
        """The connection failed at ``now``: how long to wait before the next try."""
        if self.connected_at is not None and now - self.connected_at >= self.reset_after_s:
            self.attempt = 0
        self.connected_at = None
        ceiling = self.ceiling()
        self.attempt = min(self.attempt + 1, 64)
        # Never zero: half the ceiling at least, so a storm of failures cannot spin.
        return ceiling * (0.5 + 0.5 * self.jitter())
