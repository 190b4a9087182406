"""Ports on 127.0.0.1 (:mod:`durable_ingest.loopback`)."""

from __future__ import annotations

import socket

import pytest

from durable_ingest import loopback
from durable_ingest.loopback import HOST, ephemeral_ports, lasting_port, port_is_free


def test_a_lasting_port_is_free_and_outside_the_range_the_kernel_hands_out() -> None:
    ephemeral = ephemeral_ports()
    found = {lasting_port() for _ in range(50)}
    assert all(p not in ephemeral and 1024 < p < 65536 and port_is_free(p) for p in found)
    assert len(found) > 1  # chosen at random: concurrent callers rarely meet


def test_a_lasting_port_is_never_one_to_avoid_or_one_in_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The draws are made to hit a port in use, then one to avoid, then a free one."""
    with socket.socket() as busy:
        busy.bind((HOST, lasting_port()))
        busy.listen()
        in_use = busy.getsockname()[1]
        avoided = lasting_port({in_use})
        free = lasting_port({in_use, avoided})
        draws = iter([in_use, avoided, free])
        monkeypatch.setattr(loopback.random, "randrange", lambda low, high: next(draws))
        assert lasting_port({avoided}) == free


def test_a_kernel_that_hands_out_every_port_gets_a_free_ephemeral_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With ip_local_port_range "1024 65535" there is no port outside the range to pick."""
    monkeypatch.setattr(loopback, "ephemeral_ports", lambda: range(1024, 65536))
    port = lasting_port()
    assert 1024 <= port < 65536 and port_is_free(port)
