"""Loopback helpers for the processes durable-ingest starts: ports on
127.0.0.1, and children that die with their parent."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket
import sys

HOST = "127.0.0.1"


def port_is_free(port: int, host: str = HOST) -> bool:
    """True if nothing listens on ``host:port`` (connections in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like the broker itself, ignore TIME_WAIT leftovers of a previous run.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def die_with_parent(signum: signal.Signals = signal.SIGTERM) -> None:  # pragma: no cover
    """In a child process: ask Linux to send it ``signum`` when its parent dies."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signum)  # PR_SET_PDEATHSIG


def killed_with_parent() -> None:  # pragma: no cover - runs in the child
    """In a child process: ask Linux to SIGKILL it when its parent dies.

    For children whose SIGTERM handling can wait on siblings that die at the same
    moment: an Apache Kafka node's controlled shutdown waits (minutes) for a KRaft
    quorum, and when the supervisor is killed every node of the quorum gets the
    signal at once."""
    die_with_parent(signal.SIGKILL)
