"""A capture played as a connector's feed: checked before anything starts, and the
connector variables that point the connector at the local capture server.

Used by ``ingest dev --replay`` and ``ingest source run --replay`` alike.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from foundation.errors import CaptureError, StopError
from source_workers.capture import CaptureFile, ReplaySpec
from source_workers.connectors import Connector

SAMPLE = "sample"
"""What ``--replay`` given without a file stands for: the capture the connector ships."""


def add_replay_options(parser: argparse.ArgumentParser) -> None:
    """``--replay [FILE]`` and ``--speed``, as ``ingest dev`` and ``ingest source run`` take
    them (see :func:`replay_path` and :func:`check_speed`)."""
    parser.add_argument(
        "--replay",
        nargs="?",
        const=SAMPLE,
        metavar="FILE",
        help="feed the connector a captured feed over a local websocket instead of its "
        "provider (offline); without FILE, the capture the connector ships",
    )
    parser.add_argument(
        "--speed", type=float, default=1.0, help="with --replay: this many times faster (1)"
    )


def sample_capture(connector: str) -> Path:
    """The capture a connector ships (``connectors/<name>/captures/sample.jsonl``)."""
    import source_workers.connectors as package

    return Path(package.__file__).parent / connector / "captures" / "sample.jsonl"


def replay_path(connector: str, replay: str | None) -> Path | None:
    """The capture ``--replay`` names for ``connector`` (None: no replay)."""
    if replay is None:
        return None
    return sample_capture(connector) if replay == SAMPLE else Path(replay)


def check_speed(speed: float) -> None:
    """``--speed``, checked before anything starts."""
    if not speed > 0:
        raise StopError(f"--speed must be above 0, not {speed}")


def load_capture(connector: Connector, path: Path) -> tuple[CaptureFile, ReplaySpec]:
    """The capture at ``path`` and the connector's replay spec; every line is checked
    first, so a bad capture is one clear error before anything starts."""
    spec = connector.spec.replay
    if spec is None:
        raise StopError(
            f"connector {connector.name} cannot replay a capture (its ConnectorSpec has "
            "no replay); run it against its provider instead"
        )
    capture = CaptureFile(path)
    if capture.header.connector != connector.name:
        raise CaptureError(
            f"capture {path} was recorded from connector {capture.header.connector}, "
            f"not {connector.name}"
        )
    if capture.check() == 0:
        raise CaptureError(f"capture {path} holds no frames")
    return capture, spec


def replay_env(
    connector: Connector, capture: CaptureFile, spec: ReplaySpec, ws_url: str, http_url: str
) -> dict[str, str]:
    """The connector's variables for a replay: the recorded settings (e.g. products) and
    its URLs pointed at the capture server."""
    env = capture.header.env(connector.spec.env_prefix, spec)
    env[spec.websocket_env] = ws_url
    for name in spec.http_env:
        env[name] = http_url
    return env
