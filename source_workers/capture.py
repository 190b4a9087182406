"""Captured provider feeds: record the frames a source receives, replay them later.

A capture is a JSON Lines file. The first line is the header::

    {"capture": 1, "connector": "coinbase", "recorded_at": "2026-12-01T22:00:00Z",
     "settings": {"products": ["BTC-USD", "ETH-USD"]}, "note": "..."}

``settings`` holds the connector settings the frames depend on (the fields its
:class:`ReplaySpec` names: never URLs or secrets). Every other line is one
frame as the provider sent it, with its time since the first frame::

    {"t": 0.125, "text": "{\\"type\\": \\"match\\", ...}"}
    {"t": 0.250, "bytes": "<base64>"}

``ingest dev <connector> --replay FILE`` plays a capture through the real
connector over a local websocket (:mod:`source_workers.transport.capture_server`);
``ingest source run <source> --record FILE`` writes one. Pure code apart from
the file itself.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from foundation.clock import SYSTEM_CLOCK, Clock
from foundation.errors import CaptureError

FORMAT = 1


@dataclass(frozen=True, slots=True)
class ReplaySpec:
    """How a connector replays a capture: which of its URL settings point at the
    local capture server, and which settings the capture carries."""

    websocket_env: str
    """The variable that gets the capture server's ``ws://`` URL (e.g. COINBASE_WS_URL)."""
    http_env: tuple[str, ...] = ()
    """Variables that get its ``http://`` URL (it answers 404: no REST in a capture)."""
    keep: tuple[str, ...] = ()
    """Settings fields recorded in the header and set again on replay (e.g. products)."""


@dataclass(frozen=True, slots=True)
class Frame:
    at_s: float
    data: str | bytes


@dataclass(frozen=True, slots=True)
class CaptureHeader:
    connector: str
    settings: dict[str, Any] = field(default_factory=dict)
    recorded_at: str = ""
    note: str = ""

    def env(self, prefix: str, spec: ReplaySpec) -> dict[str, str]:
        """The ``<PREFIX>_<FIELD>`` variables that replay the recorded settings."""
        env = {}
        for name in spec.keep:
            if name in self.settings:
                value = self.settings[name]
                text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
                env[f"{prefix}_{name.upper()}"] = text
        return env


class CaptureFile:
    """A capture on disk; the header is read and checked when it is opened."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with path.open("rb") as handle:
                first = handle.readline()
        except FileNotFoundError:
            raise CaptureError(f"capture {path} does not exist", path=str(path)) from None
        except OSError as exc:
            raise CaptureError(f"capture {path} cannot be read: {exc.strerror}") from None
        self.header = _header(path, first)

    def frames(self) -> Iterator[Frame]:
        """Every frame in order; CaptureError names the line of the first bad one."""
        with self.path.open("rb") as handle:
            handle.readline()
            for number, line in enumerate(handle, start=2):
                if line.strip():
                    yield _frame(self.path, number, line)

    def check(self) -> int:
        """Read the whole file; the number of frames (CaptureError if any line is bad)."""
        return sum(1 for _ in self.frames())


def _fail(path: Path, line: int, why: str) -> CaptureError:
    return CaptureError(f"capture {path} line {line}: {why}", path=str(path), line=line)


def _header(path: Path, raw: bytes) -> CaptureHeader:
    try:
        header = json.loads(raw)
    except ValueError:
        raise _fail(path, 1, "the header is not JSON (is this a capture file?)") from None
    if not isinstance(header, dict) or header.get("capture") != FORMAT:
        raise _fail(path, 1, f'the header must be an object with "capture": {FORMAT}')
    connector = header.get("connector")
    settings = header.get("settings", {})
    if not isinstance(connector, str) or not connector:
        raise _fail(path, 1, 'the header names no "connector"')
    if not isinstance(settings, dict):
        raise _fail(path, 1, '"settings" must be an object')
    return CaptureHeader(
        connector, settings, str(header.get("recorded_at", "")), str(header.get("note", ""))
    )


def _frame(path: Path, number: int, line: bytes) -> Frame:
    try:
        item = json.loads(line)
    except ValueError:
        raise _fail(path, number, "not JSON") from None
    if not isinstance(item, dict):
        raise _fail(path, number, 'a frame is an object {"t": ..., "text": ...}')
    at = item.get("t")
    if not isinstance(at, int | float) or isinstance(at, bool) or not 0 <= at < 1e9:
        raise _fail(path, number, '"t" must be the seconds since the first frame')
    if isinstance(item.get("text"), str):
        return Frame(float(at), item["text"])
    if isinstance(item.get("bytes"), str):
        try:
            return Frame(float(at), base64.b64decode(item["bytes"], validate=True))
        except ValueError:
            raise _fail(path, number, '"bytes" is not base64') from None
    raise _fail(path, number, 'a frame needs "text" (a string) or "bytes" (base64)')


class CaptureRecorder:
    """Appends every received frame to a new capture file; ``close()`` it."""

    def __init__(
        self,
        path: Path,
        connector: str,
        settings: Mapping[str, Any],
        *,
        clock: Clock = SYSTEM_CLOCK,
        note: str = "",
    ) -> None:
        self.path = path
        self._clock = clock
        self._start: float | None = None
        self.frames = 0
        try:
            self._file: IO[str] = path.open("x", encoding="utf-8")
        except FileExistsError:
            raise CaptureError(
                f"capture {path} already exists: pass a new file name", path=str(path)
            ) from None
        except OSError as exc:
            raise CaptureError(f"capture {path} cannot be created: {exc.strerror}") from None
        header = {
            "capture": FORMAT,
            "connector": connector,
            "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "settings": dict(settings),
            "note": note,
        }
        self._file.write(json.dumps(header) + "\n")

    def record(self, frame: str | bytes) -> None:
        now = self._clock.monotonic()
        if self._start is None:
            self._start = now
        at = round(now - self._start, 6)
        if isinstance(frame, str):
            line = {"t": at, "text": frame}
        else:
            line = {"t": at, "bytes": base64.b64encode(frame).decode()}
        self._file.write(json.dumps(line, ensure_ascii=False) + "\n")
        self._file.flush()
        self.frames += 1

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


def recorded_settings(settings: Any, spec: ReplaySpec) -> dict[str, Any]:
    """The settings fields ``spec`` keeps, as JSON values."""
    kept = {}
    for name in spec.keep:
        value = getattr(settings, name)
        kept[name] = list(value) if isinstance(value, tuple | list) else value
    return kept
