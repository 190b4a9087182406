"""At most one log line of each kind per window, with a count of the lines held back.

A hostile feed can produce thousands of identical warnings a second (a dead letter
each); the exact counts belong in metrics, the log needs one line per kind now and
then. Pure: the clock is injected.
"""

from __future__ import annotations

from collections.abc import Hashable

from foundation.clock import SYSTEM_CLOCK, Clock


class LogThrottle:
    """``allow(kind)``: None to hold a line back, else how many of its kind were held back
    since the last one let through (0 for the first)."""

    def __init__(
        self,
        window_s: float = 60.0,
        clock: Clock = SYSTEM_CLOCK,
        max_kinds: int = 1_000,
    ) -> None:
        self._window_s = window_s
        self._clock = clock
        self._max_kinds = max_kinds
        self._last: dict[Hashable, float] = {}
        self._held: dict[Hashable, int] = {}

    def allow(self, kind: Hashable) -> int | None:
        now = self._clock.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self._window_s:
            self._held[kind] = self._held.get(kind, 0) + 1
            return None
        if len(self._last) >= self._max_kinds and kind not in self._last:
            self._last.clear()  # bounded memory; a forgotten kind logs once more
            self._held.clear()
        self._last[kind] = now
        return self._held.pop(kind, 0)


def held_back(count: int) -> str:
    """The suffix of a line that others of its kind were held back before."""
    return (
        f" ({count} more like it held back from the log since the last such line)" if count else ""
    )
