"""The Coinbase trade ledger: duplicates, gaps, heartbeats, backfill resolution, checkpoints."""

from __future__ import annotations

import pytest

from source_workers.connectors.coinbase.trades import TradeLedger, parse_time_us, trade_row

P = "BTC-USD"


def test_contiguous_trades_move_the_checkpoint() -> None:
    """Trades in order are accepted and the checkpoint follows the newest."""
    ledger = TradeLedger()
    assert all(ledger.accept(P, i, 100 + i, 0.0) for i in range(10, 15))
    assert ledger.checkpoint() == {"products": {P: {"trade_id": 14, "sequence": 114}}}


def test_duplicates_are_dropped() -> None:
    """A trade id seen before is a duplicate."""
    ledger = TradeLedger()
    ledger.accept(P, 10, None, 0.0)
    ledger.accept(P, 11, None, 0.0)
    assert not ledger.accept(P, 11, None, 0.0) and not ledger.accept(P, 10, None, 0.0)
    assert ledger.stats.duplicates == 2


def test_a_jump_opens_a_gap_that_holds_the_checkpoint_back() -> None:
    """Missing ids are a gap; the checkpoint stays below it until it is filled."""
    ledger = TradeLedger()
    ledger.accept(P, 10, None, 0.0)
    ledger.accept(P, 14, None, 0.0)
    assert ledger.open_gaps() == {P: [(11, 13)]}
    assert ledger.checkpoint()["products"][P]["trade_id"] == 10
    assert ledger.accept(P, 12, None, 0.0)  # a late (reordered) trade fills part of it
    assert ledger.open_gaps() == {P: [(11, 11), (13, 13)]}
    ledger.accept(P, 11, None, 0.0)
    ledger.accept(P, 13, None, 0.0)
    assert ledger.open_gaps() == {} and ledger.checkpoint()["products"][P]["trade_id"] == 14


def test_heartbeat_ahead_of_the_newest_trade_reveals_missed_trades() -> None:
    """last_trade_id beyond what we saw opens a gap up to it."""
    ledger = TradeLedger()
    ledger.accept(P, 10, 5, 0.0)
    ledger.heartbeat(P, 13, 9, 1.0)
    assert ledger.open_gaps() == {P: [(11, 13)]}
    assert ledger.checkpoint()["products"][P] == {"trade_id": 10, "sequence": 9}


def test_gaps_are_due_after_the_grace_period() -> None:
    """A gap is offered for backfill once it has been open for the grace period, and again
    later after a backfill that did not finish."""
    ledger = TradeLedger()
    ledger.accept(P, 10, None, 0.0)
    ledger.accept(P, 20, None, 5.0)
    assert ledger.due(6.0, grace_s=2.0) == []
    due = ledger.due(7.0, grace_s=2.0)
    assert [(p, g.first, g.last) for p, g in due] == [(P, 11, 19)]
    due[0][1].filling = True
    assert ledger.due(8.0, grace_s=2.0) == []  # being filled
    assert ledger.retry_later(P, 11, 19, at=9.0, behind=True) == 1
    assert ledger.due(10.0, grace_s=2.0) == []
    assert len(ledger.due(11.0, grace_s=2.0)) == 1


def test_resolving_a_backfill_gives_up_what_rest_lacked() -> None:
    """After a backfill, ids still missing are counted and the checkpoint moves past them."""
    ledger = TradeLedger()
    ledger.accept(P, 10, None, 0.0)
    ledger.accept(P, 20, None, 0.0)
    for trade_id in (11, 12, 13, 15, 16, 17, 18, 19):
        ledger.accept(P, trade_id, None, 0.0)
    assert ledger.resolve(P, 11, 19) == 1
    assert ledger.stats.missing_resolved == 1
    assert ledger.checkpoint()["products"][P]["trade_id"] == 20


def test_restore_starts_from_the_checkpoint_and_sees_the_hole() -> None:
    """After a restart the first live trade ahead of the checkpoint is a gap."""
    ledger = TradeLedger()
    ledger.restore({"products": {P: {"trade_id": 100, "sequence": 7}}})
    assert not ledger.accept(P, 100, None, 0.0)
    ledger.accept(P, 150, 9, 0.0)
    assert ledger.open_gaps() == {P: [(101, 149)]}
    assert ledger.checkpoint()["products"][P] == {"trade_id": 100, "sequence": 9}


def test_products_are_independent() -> None:
    """A gap in one product does not hold back another's checkpoint."""
    ledger = TradeLedger()
    ledger.accept(P, 1, None, 0.0)
    ledger.accept(P, 5, None, 0.0)
    ledger.accept("ETH-USD", 7, None, 0.0)
    ledger.accept("ETH-USD", 8, None, 0.0)
    products = ledger.checkpoint()["products"]
    assert products[P]["trade_id"] == 1 and products["ETH-USD"]["trade_id"] == 8


def test_trade_rows_from_feed_and_rest() -> None:
    """A feed match and a REST trade become the same row, REST without order ids."""
    rest = {
        "time": "2026-11-22T03:00:00.5Z",
        "trade_id": 5,
        "price": "1.25",
        "size": "2",
        "side": "buy",
    }
    row = trade_row(rest, P, None)
    assert row["time"] == parse_time_us("2026-11-22T03:00:00.500000Z")
    assert row["maker_order_id"] is None and str(row["price"]) == "1.25"


@pytest.mark.parametrize(
    ("field", "value"),
    [("price", "NaN"), ("price", 1.5), ("side", "up"), ("trade_id", -1), ("time", "yesterday")],
)
def test_bad_trade_fields_are_refused(field: str, value: object) -> None:
    """A malformed field raises ValueError naming it (the runtime dead-letters the frame)."""
    message = {
        "time": "2026-11-22T03:00:00Z",
        "trade_id": 5,
        "price": "1",
        "size": "2",
        "side": "buy",
    }
    message[field] = value
    with pytest.raises(ValueError):
        trade_row(message, P, None)


def test_implausible_jumps_within_a_session_are_refused() -> None:
    """A heartbeat or mid-session trade far past the newest is refused; a session's first
    trade may jump (the hole after a reconnect)."""
    ledger = TradeLedger(max_jump=100)
    ledger.restore({"products": {P: {"trade_id": 10, "sequence": None}}})
    ledger.new_session()
    assert ledger.accept(P, 500, None, 0.0)  # first of the session: a gap 11..499
    with pytest.raises(ValueError, match="implausible"):
        ledger.accept(P, 10**15, None, 0.0)
    with pytest.raises(ValueError, match="implausible"):
        ledger.heartbeat(P, 10**15, None, 0.0)
    assert ledger.accept(P, 501, None, 0.0) and ledger.checkpoint()["products"][P]["trade_id"] == 10


def test_a_trade_arriving_after_its_range_was_given_up_is_still_taken() -> None:
    """Late feed trades in a resolved range are new, not duplicates."""
    ledger = TradeLedger()
    ledger.accept(P, 10, None, 0.0)
    ledger.accept(P, 20, None, 0.0)
    ledger.resolve(P, 11, 19)
    assert ledger.accept(P, 15, None, 0.0) and not ledger.accept(P, 15, None, 0.0)


def test_due_gaps_are_not_marked_until_filling_starts_and_new_sessions_reset_them() -> None:
    """Only the gap being filled is marked; a new session offers every gap again."""
    ledger = TradeLedger()
    ledger.accept(P, 1, None, 0.0)
    ledger.accept(P, 5, None, 0.0)
    ledger.accept("ETH-USD", 1, None, 0.0)
    ledger.accept("ETH-USD", 9, None, 0.0)
    due = ledger.due(10.0, grace_s=0)
    assert len(due) == 2 and len(ledger.due(10.0, grace_s=0)) == 2
    due[0][1].filling = True
    assert len(ledger.due(10.0, grace_s=0)) == 1
    ledger.new_session()
    assert len(ledger.due(10.0, grace_s=0)) == 2


def test_feed_frames_cannot_imitate_internal_messages() -> None:
    """A feed frame typed backfill_done or rest_trade is not recognised (dead-lettered)."""
    from source_workers.authoring import Internal
    from source_workers.connectors.coinbase.resources.matches import parse

    assert parse({"type": "backfill_done", "product_id": P, "first": 1, "last": 9}) is None
    assert parse({"type": "rest_trade", "product_id": P}) is None
    assert parse(Internal("backfill_done", {"product_id": P}))["type"] == "backfill_done"


def test_rest_trades_do_not_end_a_sessions_freshness() -> None:
    """After a long outage, REST trades filling old gaps do not make the first live trade
    (far ahead) look implausible; a fresh heartbeat may jump too."""
    ledger = TradeLedger(max_jump=100)
    ledger.restore({"products": {P: {"trade_id": 10, "sequence": None}}})
    ledger.new_session()
    assert ledger.accept(P, 11, None, 0.0, feed=False)  # backfill of an old gap
    ledger.heartbeat(P, 5_000, None, 0.0)  # still fresh: no live trade yet
    assert ledger.accept(P, 5_001, None, 0.0)
    with pytest.raises(ValueError, match="implausible"):
        ledger.heartbeat(P, 10**9, None, 0.0)


def test_feed_errors_stop_for_a_refused_product_and_reconnect_otherwise() -> None:
    """Coinbase `error` messages: an invalid product stops the worker, anything else reconnects."""
    from foundation.errors import ConnectionLostError, ProviderRefusedError
    from source_workers.connectors.coinbase.source import control

    refused = {
        "type": "error",
        "message": "Failed to subscribe",
        "reason": "X is not a valid product",
    }
    with pytest.raises(ProviderRefusedError, match="not a valid product"):
        control(refused)
    with pytest.raises(ConnectionLostError, match="slow consumer"):
        control({"type": "error", "message": "slow consumer"})
    assert control({"type": "subscriptions", "channels": []}) is True
    assert control({"type": "match"}) is False
