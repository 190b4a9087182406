"""Loopback helpers for the processes durable-ingest starts: ports on
127.0.0.1, and children that die with their parent."""

from __future__ import annotations

import contextlib
import ctypes
import random
import signal
import socket
import sys
from pathlib import Path

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


def ephemeral_ports() -> range:
    """The ports the kernel hands out for ``bind(0)`` and outgoing connections
    (Linux's ``ip_local_port_range``; its default elsewhere)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


def lasting_port(avoid: set[int] | None = None, host: str = HOST) -> int:
    """A free port outside the ephemeral range, for a server that may stop and start again
    on it (a broker the stack restarts, a cluster node after a fault).

    A port from :func:`free_port` is an ephemeral one: while its server is down, the kernel
    may give it to any other program's ``bind(0)`` or outgoing connection, and a client
    that keeps reconnecting to it can even be connected to itself. Then the server cannot
    come back on it. Ports outside that range are only ever taken by asking for them."""
    ephemeral = ephemeral_ports()
    low, high = (10_000, ephemeral.start) if ephemeral.start > 12_000 else (ephemeral.stop, 65_536)
    taken = avoid or set()
    for _ in range(200 if high - low >= 100 else 0):
        port = random.randrange(low, high)
        if port not in taken and port_is_free(port, host):
            return port
    # Nothing free out there after 200 tries, or the kernel hands out (almost) every port
    # (ip_local_port_range "1024 65535"): an ephemeral one, as before.
    return free_port(host)


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
