"""Times as staged records carry them: microseconds since the epoch, and RFC 3339 text
with microseconds (``ce_time``, ``ce_ingesttime``, ``saved_at``). Pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from staging.record_check import logical_fields
from staging.schemas import StagedSchema

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_ONE_US = timedelta(microseconds=1)


def rfc3339(micros: int) -> str:
    """RFC 3339 UTC timestamp with microseconds, e.g. ``2026-11-22T03:19:22.000001Z``."""
    return (_EPOCH + timedelta(microseconds=micros)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_micros(value: Any, int_unit_us: int = 1) -> int:
    """Microseconds since the epoch of a datetime (naive means UTC) or of an int in
    units of ``int_unit_us`` microseconds (1000 for a ``timestamp-millis`` field)."""
    if isinstance(value, datetime):
        epoch = _EPOCH if value.tzinfo is not None else _EPOCH_NAIVE
        return (value - epoch) // _ONE_US
    return int(value) * int_unit_us


_UNIT_US = {"timestamp-millis": 1_000, "local-timestamp-millis": 1_000, "date": 86_400_000_000}


def time_unit_us(schema: StagedSchema, field: str | None) -> int:
    """Microseconds per unit of an int value of ``field`` (its logical type; default 1)."""
    if field is not None:
        for logical, unit in _UNIT_US.items():
            if field in logical_fields(schema, logical):
                return unit
    return 1


class TimeFormatter:
    """``rfc3339(micros).encode()``, caching the part up to the second."""

    __slots__ = ("_cache",)

    def __init__(self) -> None:
        self._cache: dict[int, bytes] = {}

    def __call__(self, micros: int) -> bytes:
        seconds, fraction = divmod(micros, 1_000_000)
        prefix = self._cache.get(seconds)
        if prefix is None:
            if len(self._cache) > 4096:
                self._cache.clear()
            prefix = rfc3339(seconds * 1_000_000)[:-7].encode()
            self._cache[seconds] = prefix
        return prefix + b"%06dZ" % fraction
