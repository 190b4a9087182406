"""What ``ingest dev`` shows while it runs: worker metrics into progress lines. Pure code.

The workers' admin ports serve Prometheus text (``/metrics``) and a JSON
``/health``; :func:`parse_metrics` reads the first, :class:`Snapshot` holds
what one poll of both workers saw, and :func:`render` turns two consecutive
snapshots into one line::

    00:12  staged 4,810 (402/s)  written 4,620 (398/s)  lag 190  fresh 0.4 s  dead 0  checkpoint BTC-USD:887414113 ETH-USD:612906052

*lag* is records staged but not yet written (the source's count minus the
sink's), *fresh* is how old the newest written event was when it was written
(the sink's ``ingest_sink_freshness_seconds``), *dead* counts dead letters of
both workers, and *checkpoint* is the newest one the sink saved.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def parse_metrics(text: str) -> dict[str, float]:
    """Each family's samples summed over their labels (``ingest_x_total`` -> sum)."""
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line.strip())
        if match is None:
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        name = match.group(1)
        totals[name] = totals.get(name, 0.0) + value
    return totals


def maximum(text: str, name: str) -> float | None:
    """The largest sample of one family (for gauges such as freshness)."""
    found = None
    for line in text.splitlines():
        match = _SAMPLE.match(line.strip()) if line and not line.startswith("#") else None
        if match is not None and match.group(1) == name:
            value = float(match.group(3))
            found = value if found is None else max(found, value)
    return found


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One poll of the source and sink admin ports, ``at`` seconds since the start."""

    at: float
    staged: int = 0
    written: int = 0
    source_dead_letters: int = 0
    sink_dead_letters: int = 0
    connected: bool = False
    freshness_s: float | None = None
    checkpoints: Mapping[str, Any] = field(default_factory=dict)

    @property
    def dead_letters(self) -> int:
        return self.source_dead_letters + self.sink_dead_letters

    @property
    def settled(self) -> bool:
        """Every staged record written, or dead-lettered by the sink."""
        return self.written + self.sink_dead_letters >= self.staged

    @classmethod
    def of(
        cls,
        at: float,
        source_metrics: str | None,
        sink_metrics: str | None,
        sink_health: Mapping[str, Any] | None,
    ) -> Snapshot:
        source = parse_metrics(source_metrics or "")
        sink = parse_metrics(sink_metrics or "")
        return cls(
            at=at,
            staged=int(source.get("ingest_source_records_staged_total", 0)),
            written=int(sink.get("ingest_sink_rows_written_total", 0)),
            source_dead_letters=int(source.get("ingest_source_dead_letters_total", 0)),
            sink_dead_letters=int(sink.get("ingest_sink_dead_letters_total", 0)),
            connected=source.get("ingest_source_connected", 0) > 0,
            freshness_s=maximum(sink_metrics or "", "ingest_sink_freshness_seconds"),
            checkpoints=dict((sink_health or {}).get("last_checkpoints") or {}),
        )


@dataclass(slots=True)
class Quiet:
    """When the staged and written counts last changed. For ``--idle-exit``, the quiet is
    counted from the source's first connection: a source still starting, or one that never
    reached its provider, is not a feed gone quiet (``--duration`` bounds such a run)."""

    counts: tuple[int, int] = (0, 0)
    changed: float = 0.0
    """When the counts last changed (seconds since the start, as ``Snapshot.at``)."""
    connected: float | None = None
    """When the source was first seen connected (or its first records); None until then."""

    def observe(self, now: Snapshot) -> float:
        """Take ``now`` in; the seconds quiet as ``--idle-exit`` counts them."""
        counts = (now.staged, now.written)
        if counts != self.counts:
            self.counts, self.changed = counts, now.at
        if self.connected is None:
            if not now.connected and counts == (0, 0):
                return 0.0
            self.connected = now.at
        return now.at - max(self.changed, self.connected)

    def unchanged_for(self, now: Snapshot) -> float:
        """Seconds since the counts last changed, counted from the start."""
        return now.at - self.changed


def _rate(now: int, before: int, seconds: float) -> str:
    return f"{max(0, now - before) / seconds:,.0f}/s" if seconds > 0 else "-"


def _clock(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes:02d}:{rest:02d}"


def describe_checkpoint(checkpoints: Mapping[str, Any], width: int = 60) -> str:
    """The newest checkpoint per resource, flattened: ``BTC-USD.trade_id=887414113 ...``."""
    if not checkpoints:
        return "none yet"
    parts = []
    for resource, value in sorted(checkpoints.items()):
        text = " ".join(f"{k}={v}" for k, v in _leaves(value, ()))
        parts.append(text if len(checkpoints) == 1 else f"{resource}: {text}")
    line = "; ".join(parts)
    return line if len(line) <= width else line[: width - 1] + "…"


def _leaves(value: Any, path: tuple[str, ...]) -> list[tuple[str, Any]]:
    """Leaf values with the last two keys of their path (enough to tell them apart)."""
    if isinstance(value, Mapping) and value:
        found: list[tuple[str, Any]] = []
        for key, item in value.items():
            found += _leaves(item, (*path, str(key)))
        return found
    name = ".".join(path[-2:]) if path else "value"
    return [(name, json.dumps(value, default=str) if isinstance(value, list | dict) else value)]


def duration(seconds: float) -> str:
    """``0.4 s``, ``12 min``, ``10.2 h``, ``3.1 d``."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7_200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3_600:.1f} h"
    return f"{seconds / 86_400:.1f} d"


def render(now: Snapshot, before: Snapshot | None) -> str:
    """One progress line (rates from ``before`` to ``now``)."""
    seconds = now.at - before.at if before is not None else now.at
    previous = before or Snapshot(0.0)
    fresh = duration(now.freshness_s) if now.freshness_s is not None else "-"
    state = "" if now.connected else "  (source not connected)"
    return (
        f"{_clock(now.at)}  staged {now.staged:,} ({_rate(now.staged, previous.staged, seconds)})"
        f"  written {now.written:,} ({_rate(now.written, previous.written, seconds)})"
        f"  lag {max(0, now.staged - now.written):,}  fresh {fresh}"
        f"  dead {now.dead_letters}  checkpoint {describe_checkpoint(now.checkpoints)}{state}"
    )
