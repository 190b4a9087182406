"""Who a sink's ``POST /sql`` answers: its own host always; other hosts only with the
sink's token (a ``--admin-host 0.0.0.0`` would otherwise open every table). Pure."""

from __future__ import annotations

import pytest

from foundation.admin import sql_refusal


@pytest.mark.parametrize("peer", ["127.0.0.1", "127.0.0.53", "::1"])
def test_loopback_clients_are_served_without_a_token(peer: str) -> None:
    assert sql_refusal(peer, None, None) is None
    assert sql_refusal(peer, "t0k", None) is None


def test_other_hosts_are_refused_unless_a_token_is_set_and_sent() -> None:
    refused = sql_refusal("10.88.0.1", None, "Bearer anything")
    assert refused is not None and "set INGEST_ADMIN_SQL_TOKEN on the sink" in refused
    assert sql_refusal("10.88.0.1", "t0k", None) is not None
    assert sql_refusal("10.88.0.1", "t0k", "Bearer wrong") is not None
    assert sql_refusal("10.88.0.1", "t0k", "Bearer t0k") is None
    assert sql_refusal("not-an-address", None, None) is not None
