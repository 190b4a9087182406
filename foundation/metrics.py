"""Prometheus metrics, without a dependency: counters, gauges and summaries.

A :class:`Metrics` registry holds labelled series and renders the text
exposition format (version 0.0.4). Pure code; the HTTP side is
:mod:`foundation.admin`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

Labels = tuple[tuple[str, str], ...]


def _labels(labels: Mapping[str, str] | None) -> Labels:
    return tuple(sorted((labels or {}).items()))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _render_labels(labels: Labels, extra: tuple[tuple[str, str], ...] = ()) -> str:
    pairs = labels + extra
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _number(value: float) -> str:
    """Full precision: offsets and Unix times must not be rounded to six digits."""
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


@dataclass(frozen=True, slots=True)
class _Family:
    name: str
    kind: str  # counter, gauge, summary
    help: str


class Metrics:
    """A thread-safe registry of metric families and their labelled values."""

    def __init__(self, prefix: str = "ingest") -> None:
        self._prefix = prefix
        self._lock = threading.Lock()
        self._families: dict[str, _Family] = {}
        self._values: dict[str, dict[Labels, float]] = {}
        self._sums: dict[str, dict[Labels, tuple[float, int]]] = {}

    def _family(self, name: str, kind: str, help_text: str) -> str:
        full = f"{self._prefix}_{name}"
        family = self._families.get(full)
        if family is None:
            self._families[full] = _Family(full, kind, help_text)
            self._values[full] = {}
            self._sums[full] = {}
        elif family.kind != kind:
            raise ValueError(f"metric {full} is a {family.kind}, not a {kind}")
        return full

    def inc(
        self,
        name: str,
        amount: float = 1.0,
        labels: Mapping[str, str] | None = None,
        *,
        help: str = "",
    ) -> None:
        with self._lock:
            full = self._family(name, "counter", help)
            key = _labels(labels)
            self._values[full][key] = self._values[full].get(key, 0.0) + amount

    def set(
        self, name: str, value: float, labels: Mapping[str, str] | None = None, *, help: str = ""
    ) -> None:
        with self._lock:
            full = self._family(name, "gauge", help)
            self._values[full][_labels(labels)] = value

    def observe(
        self, name: str, value: float, labels: Mapping[str, str] | None = None, *, help: str = ""
    ) -> None:
        with self._lock:
            full = self._family(name, "summary", help)
            key = _labels(labels)
            total, count = self._sums[full].get(key, (0.0, 0))
            self._sums[full][key] = (total + value, count + 1)

    def value(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        """A counter's or gauge's current value (for tests and status views)."""
        with self._lock:
            return self._values.get(f"{self._prefix}_{name}", {}).get(_labels(labels))

    def render(self) -> str:
        """The Prometheus text exposition of every series."""
        lines: list[str] = []
        with self._lock:
            for full, family in sorted(self._families.items()):
                if family.help:
                    lines.append(f"# HELP {full} {family.help}")
                lines.append(f"# TYPE {full} {family.kind}")
                if family.kind == "summary":
                    for labels, (total, count) in sorted(self._sums[full].items()):
                        lines.append(f"{full}_sum{_render_labels(labels)} {total:.6f}")
                        lines.append(f"{full}_count{_render_labels(labels)} {count}")
                else:
                    for labels, value in sorted(self._values[full].items()):
                        lines.append(f"{full}{_render_labels(labels)} {_number(value)}")
        return "\n".join(lines) + "\n"
