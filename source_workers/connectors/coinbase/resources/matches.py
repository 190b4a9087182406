"""Resource ``matches``: every Coinbase trade once, keyed by product and trade id.

``parse`` recognises feed ``match`` and ``last_match`` messages, ``heartbeat``
messages (which reveal missed trades through ``last_trade_id``), and the
backfill's own :class:`Internal` messages: trades fetched over REST
(``rest_trade``) and the end of a backfill (``backfill_done``), which no feed
frame can imitate. ``process`` asks the :class:`TradeLedger` whether a trade
is new, returns its row, and returns the ledger's contiguous checkpoint.
"""

from __future__ import annotations

from typing import Any

from foundation.clock import SYSTEM_CLOCK, Clock
from source_workers.authoring import Internal, Output, Resource, define_resource
from source_workers.connectors.coinbase.trades import TradeLedger, trade_id_of, trade_row

_FEED = frozenset(("match", "last_match", "heartbeat"))
_INTERNAL = frozenset(("rest_trade", "backfill_done"))


def parse(raw: Any) -> dict[str, Any] | None:
    if isinstance(raw, Internal):
        return {**raw.data, "type": raw.kind} if raw.kind in _INTERNAL else None
    if isinstance(raw, dict) and raw.get("type") in _FEED:
        return raw
    return None


class Matches:
    """``process`` for matches: one ledger per worker, shared with the backfill."""

    def __init__(self, ledger: TradeLedger, clock: Clock = SYSTEM_CLOCK) -> None:
        self.ledger = ledger
        self.clock = clock
        """Times when a gap was found: the runtime's clock, which ``start`` sets for each
        session (the backfill reads the same one to tell when a gap is due)."""

    def __call__(self, message: dict[str, Any], received_at_us: int) -> Output | None:
        kind = message["type"]
        product = message["product_id"]
        if not isinstance(product, str) or not product:
            raise ValueError(f"product_id {product!r} is not a product")
        ledger = self.ledger
        sequence = message.get("sequence") if kind != "rest_trade" else None
        if sequence is not None and (not isinstance(sequence, int) or isinstance(sequence, bool)):
            raise ValueError(f"sequence {sequence!r} is not an integer")
        if kind == "heartbeat":
            ledger.heartbeat(
                product, trade_id_of(message["last_trade_id"]), sequence, self.clock.monotonic()
            )
            return Output((), ledger.checkpoint)
        if kind == "backfill_done":
            ledger.resolve(product, int(message["first"]), int(message["last"]))
            return Output((), ledger.checkpoint)
        row = trade_row(message, product, sequence)
        feed = kind != "rest_trade"
        if not ledger.accept(product, row["trade_id"], sequence, self.clock.monotonic(), feed=feed):
            return None
        return Output((row,), ledger.checkpoint)  # built when the rows are staged


def resource(process: Matches) -> Resource:
    return define_resource(
        name="matches",
        target="clickhouse",
        schema="coinbase/matches.avsc",
        key=("product_id",),
        id_fields=("product_id", "trade_id"),
        time_field="time",
        parse=parse,
        process=process,
    )
