"""Coinbase trades, pure: message fields into rows, and which trade ids are missing.

Coinbase trade ids increase by one per product, so the :class:`TradeLedger`
can tell, per product, which trades it has accepted, which are duplicates,
and which are missing (*gaps*): a match whose id jumps ahead, a heartbeat
whose ``last_trade_id`` is ahead of the newest match seen, or, after a
restart, the first live trade being ahead of the checkpoint. Gaps are filled
from the REST trades endpoint; a range the endpoint could not fill is
*resolved* as missing (counted), so the checkpoint can move on.

The checkpoint is the **contiguous** trade id per product: every trade up to
it has been accepted (or resolved missing). It never passes an open gap, so a
restart after a crash backfills the hole from REST rather than skipping it.

Feed sequence numbers are kept per product too (``sequence`` in the
checkpoint). On the ``matches`` channel they are not contiguous (the product's
order-book events use the numbers in between), so they cannot reveal a gap;
a sequence that goes backwards reveals reordering, which is counted.
"""

from __future__ import annotations

from bisect import insort
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_second_cache: dict[str, int] = {}


def parse_time_us(text: str) -> int:
    """``2026-11-22T03:19:22.028459Z`` as microseconds since the epoch (UTC)."""
    if not isinstance(text, str) or len(text) < 20:
        raise ValueError(f"time {text!r} is not an RFC 3339 timestamp")
    head = text[:19]
    seconds = _second_cache.get(head)
    if seconds is None:
        if len(_second_cache) > 4096:
            _second_cache.clear()
        moment = datetime.fromisoformat(head).replace(tzinfo=UTC)
        seconds = (moment - _EPOCH) // _ONE_SECOND
        _second_cache[head] = seconds
    tail = text[19:]
    if tail in ("Z", "+00:00"):
        return seconds * 1_000_000
    if tail[0] != "." or not (tail.endswith("Z") or tail.endswith("+00:00")):
        raise ValueError(f"time {text!r} is not UTC RFC 3339")
    digits = tail[1:].removesuffix("Z").removesuffix("+00:00")
    if not digits.isdigit() or len(digits) > 9:
        raise ValueError(f"time {text!r} has a bad fraction")
    return seconds * 1_000_000 + int(digits[:6].ljust(6, "0"))


_ONE_SECOND = datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC) - _EPOCH


def decimal_of(value: Any, name: str) -> Decimal:
    if not isinstance(value, str):
        raise ValueError(f"{name} {value!r} is not a decimal string")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{name} {value!r} is not a decimal") from None
    if not number.is_finite():
        raise ValueError(f"{name} {value!r} is not finite")
    return number


def trade_id_of(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"trade_id {value!r} is not a positive integer")
    return value


def trade_row(message: dict[str, Any], product: str, sequence: int | None) -> dict[str, Any]:
    """A ``matches`` row from a feed match or a REST trade (which has no order ids)."""
    side = message["side"]
    if side not in ("buy", "sell"):
        raise ValueError(f"side {side!r} is neither buy nor sell")
    return {
        "product_id": product,
        "trade_id": trade_id_of(message["trade_id"]),
        "sequence": sequence,
        "time": parse_time_us(message["time"]),
        "side": side,
        "price": decimal_of(message["price"], "price"),
        "size": decimal_of(message["size"], "size"),
        "maker_order_id": message.get("maker_order_id"),
        "taker_order_id": message.get("taker_order_id"),
    }


@dataclass(slots=True)
class Gap:
    first: int
    last: int
    found_at: float
    filling: bool = False
    """A backfill for it is under way."""
    behind: int = 0
    """Backfills of it that found REST behind the feed."""

    def __lt__(self, other: Gap) -> bool:
        return self.first < other.first


@dataclass(slots=True)
class ProductState:
    high: int
    """Highest trade id accepted."""
    sequence: int | None = None
    gaps: list[Gap] = field(default_factory=list)
    given_up: list[tuple[int, int]] = field(default_factory=list)
    """The last ranges resolved as missing: a trade arriving late there is still taken."""
    fresh: bool = True
    """No trade seen yet in this session: its first trade may jump far ahead."""

    @property
    def contiguous(self) -> int:
        return self.gaps[0].first - 1 if self.gaps else self.high


@dataclass(slots=True)
class LedgerStats:
    accepted: int = 0
    duplicates: int = 0
    gaps_found: int = 0
    missing_resolved: int = 0
    """Trades that neither the feed nor REST delivered, given up on."""
    reordered: int = 0


class TradeLedger:
    """Per product: accepted trade ids, open gaps, and the checkpoint they allow."""

    def __init__(self, max_jump: int = 2_000_000) -> None:
        self.products: dict[str, ProductState] = {}
        self.stats = LedgerStats()
        self.max_jump = max_jump
        """Within a session, a trade id or heartbeat this far past the newest is refused
        (a bogus frame would otherwise blind the ledger); a session's first trade per
        product may jump further (the hole after a reconnect or restart)."""

    def new_session(self) -> None:
        """A connection (re)started: gaps are offered again, first trades may jump."""
        for state in self.products.values():
            state.fresh = True
            for gap in state.gaps:
                gap.filling = False

    def restore(self, checkpoint: dict[str, Any] | None) -> None:
        """Start from a confirmed checkpoint: ``{"products": {p: {"trade_id", "sequence"}}}``."""
        if not checkpoint:
            return
        for product, state in dict(checkpoint.get("products", {})).items():
            self.products[product] = ProductState(
                high=int(state["trade_id"]), sequence=state.get("sequence")
            )

    def accept(
        self, product: str, trade_id: int, sequence: int | None, now: float, *, feed: bool = True
    ) -> bool:
        """True for a new trade (stage it), False for a duplicate (drop it).

        ``feed``: from the live feed (a REST trade does not end a session's freshness).
        """
        state = self.products.get(product)
        if state is None:
            self.products[product] = ProductState(high=trade_id, sequence=sequence)
            self.stats.accepted += 1
            return True
        if trade_id > state.high + self.max_jump and not state.fresh:
            raise ValueError(
                f"trade_id {trade_id} is {trade_id - state.high} past the newest {product} "
                f"trade {state.high} (over max_backfill_trades): refused as implausible"
            )
        if feed:
            state.fresh = False
        if sequence is not None:
            if state.sequence is not None and sequence < state.sequence:
                self.stats.reordered += 1
            else:
                state.sequence = sequence
        if trade_id > state.high:
            if trade_id > state.high + 1:
                self._open(state, state.high + 1, trade_id - 1, now)
            state.high = trade_id
            self.stats.accepted += 1
            return True
        for index, gap in enumerate(state.gaps):
            if gap.first <= trade_id <= gap.last:
                _punch(state.gaps, index, trade_id)
                self.stats.accepted += 1
                return True
        for index, (first, last) in enumerate(state.given_up):
            if first <= trade_id <= last:  # late, after REST gave up on it: still take it
                del state.given_up[index]
                state.given_up[index:index] = [
                    r for r in ((first, trade_id - 1), (trade_id + 1, last)) if r[0] <= r[1]
                ]
                self.stats.accepted += 1
                return True
        self.stats.duplicates += 1
        return False

    def heartbeat(self, product: str, last_trade_id: int, sequence: int | None, now: float) -> None:
        """The feed says ``last_trade_id`` happened: anything beyond our newest is missing."""
        state = self.products.get(product)
        if state is None:
            return  # nothing to compare with yet; the next match starts the product
        if last_trade_id > state.high + self.max_jump and not state.fresh:
            raise ValueError(
                f"heartbeat last_trade_id {last_trade_id} is {last_trade_id - state.high} past "
                f"the newest {product} trade {state.high}: refused as implausible"
            )
        if last_trade_id > state.high:
            self._open(state, state.high + 1, last_trade_id, now)
            state.high = last_trade_id
        if sequence is not None and (state.sequence is None or sequence > state.sequence):
            state.sequence = sequence

    def due(self, now: float, grace_s: float) -> list[tuple[str, Gap]]:
        """Gaps open for ``grace_s`` (a late or reordered trade may still fill them) and
        not being filled. The caller marks each one ``filling`` as it starts on it."""
        return [
            (product, gap)
            for product, state in self.products.items()
            for gap in state.gaps
            if not gap.filling and now - gap.found_at >= grace_s
        ]

    def resolve(self, product: str, first: int, last: int) -> int:
        """A backfill of ``first..last`` ended: what is still missing there is given up.

        Returns how many trade ids were given up.
        """
        state = self.products.get(product)
        if state is None:
            return 0
        given_up = 0
        kept = []
        for gap in state.gaps:
            if gap.last < first or gap.first > last:
                kept.append(gap)
                continue
            given_up += min(gap.last, last) - max(gap.first, first) + 1
            state.given_up = [
                *state.given_up[-63:],
                (max(gap.first, first), min(gap.last, last)),
            ]
            if gap.first < first:
                kept.append(Gap(gap.first, first - 1, gap.found_at))
            if gap.last > last:
                kept.append(Gap(last + 1, gap.last, gap.found_at))
        state.gaps = sorted(kept)
        self.stats.missing_resolved += given_up
        return given_up

    def retry_later(
        self, product: str, first: int, last: int, at: float, *, behind: bool = False
    ) -> int:
        """A backfill of ``first..last`` did not finish: offer its gaps again from ``at``.

        ``behind``: it found REST behind the feed (counted). Returns the largest count.
        """
        count = 0
        for gap in self.products[product].gaps if product in self.products else ():
            if gap.last >= first and gap.first <= last:
                gap.filling = False
                gap.found_at = at
                gap.behind += int(behind)
                count = max(count, gap.behind)
        return count

    def open_gaps(self) -> dict[str, list[tuple[int, int]]]:
        return {p: [(g.first, g.last) for g in s.gaps] for p, s in self.products.items() if s.gaps}

    def checkpoint(self) -> dict[str, Any]:
        """Contiguous trade id (and last sequence) per product."""
        return {
            "products": {
                p: {"trade_id": s.contiguous, "sequence": s.sequence}
                for p, s in sorted(self.products.items())
            }
        }

    def _open(self, state: ProductState, first: int, last: int, now: float) -> None:
        insort(state.gaps, Gap(first, last, now))
        self.stats.gaps_found += 1


def _punch(gaps: list[Gap], index: int, trade_id: int) -> None:
    """Remove one id from the gap at ``index``, splitting it if needed."""
    gap = gaps[index]
    pieces = []
    if gap.first < trade_id:
        pieces.append(Gap(gap.first, trade_id - 1, gap.found_at, gap.filling, gap.behind))
    if trade_id < gap.last:
        pieces.append(Gap(trade_id + 1, gap.last, gap.found_at, gap.filling, gap.behind))
    gaps[index : index + 1] = pieces
