"""A protocol-faithful Coinbase Exchange for tests: the websocket feed and REST trades.

Built on the websockets library, in a thread of its own. It follows the
documented message formats of the public feed (``subscribe`` →
``subscriptions``, ``last_match`` then ``match`` per trade, ``heartbeat`` with
``last_trade_id`` once a second per product, ``error`` for a bad product) and
of ``GET /products/{id}/trades`` (newest first, ``limit`` ≤ 1000, ``after``
cursor, ``cb-after``/``cb-before`` headers, 404 for an unknown product).

Trades are generated deterministically per product. Faults can be injected:
trades left out of the feed (gaps, still in REST), duplicated or reordered
frames, malformed and oversized frames, silence, disconnects, error replies,
429s from REST, and REST lagging the feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from source_workers.transport.local_server import LocalServer

T0 = datetime(2026, 11, 22, 3, 0, 0, tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Faults:
    """What the exchange does wrong; change between trades (guarded by the server lock)."""

    skip_live: set[int] = field(default_factory=set)
    """Trade ids not sent on the feed (REST still has them)."""
    duplicate: set[int] = field(default_factory=set)
    """Trade ids sent twice."""
    reorder: set[int] = field(default_factory=set)
    """Trade ids held back and sent after the next trade."""
    malformed_after: dict[int, list[str | bytes]] = field(default_factory=dict)
    """Frames sent right after the given trade id."""
    disconnect_after: set[int] = field(default_factory=set)
    """Close every connection (no close frame) after sending this trade id."""
    silent: bool = False
    """Send nothing at all (no trades, no heartbeats), keep the socket open."""
    rest_behind: int = 0
    """REST does not know the newest N trades of each product yet (it lags the feed)."""
    rest_429: int = 0
    """The next N REST requests answer 429."""
    rest_retry_after: str | None = "0"


@dataclass
class Trade:
    product: str
    trade_id: int
    sequence: int
    time: datetime
    side: str
    price: str
    size: str
    maker: str
    taker: str

    def match(self, kind: str = "match") -> dict[str, Any]:
        return {
            "type": kind,
            "trade_id": self.trade_id,
            "maker_order_id": self.maker,
            "taker_order_id": self.taker,
            "side": self.side,
            "size": self.size,
            "price": self.price,
            "product_id": self.product,
            "sequence": self.sequence,
            "time": _iso(self.time),
        }

    def rest(self) -> dict[str, Any]:
        return {
            "time": _iso(self.time),
            "trade_id": self.trade_id,
            "price": self.price,
            "size": self.size,
            "side": self.side,
        }


class CoinbaseExchange(LocalServer):
    """Start with ``with CoinbaseExchange(["BTC-USD"]) as exchange:``; trade with ``trade()``."""

    name = "test exchange"

    def __init__(
        self,
        products: list[str],
        *,
        first_trade_id: int = 1_000,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__()
        self.products = list(products)
        self._clock = clock
        """A trade's time: ``clock()`` when given (bench/e2e.py measures freshness from
        it), else a fixed start plus 7 ms per trade id (deterministic, for tests)."""
        self.faults = Faults()
        self.trades: dict[str, list[Trade]] = {p: [] for p in products}
        self._next_id = {p: first_trade_id for p in products}
        self._sequence = {p: 50_000 for p in products}
        self._held: dict[str, Trade | None] = {p: None for p in products}
        self._subscribers: dict[ServerConnection, set[str]] = {}
        """Open feed connections and the products each subscribed to."""
        self._lock = threading.Lock()
        self.connections_opened = 0
        self.rest_requests = 0
        self.frames_sent = 0
        """Frames sent on the feed, to every connection (what a reader has to read)."""
        self.subscribe_messages: list[dict[str, Any]] = []

    # --- life -----------------------------------------------------------------

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def subscribed(self) -> int:
        """Connections whose subscription is registered: trades made from now on reach
        them (an open connection still subscribing misses them, as on the real feed)."""
        return len(self._subscribers)

    def _background(self) -> list[Coroutine[Any, Any, None]]:
        return [self._heartbeats()]

    # --- trades ---------------------------------------------------------------

    def trade(self, product: str | None = None, count: int = 1) -> list[Trade]:
        """Make ``count`` trades of ``product`` (default: the first) and send them."""
        product = product or self.products[0]
        made = []
        for _ in range(count):
            with self._lock:
                made.append(self._new_trade(product))
        self.call(self._publish(made))
        return made

    def _new_trade(self, product: str) -> Trade:
        trade_id = self._next_id[product]
        self._next_id[product] += 1
        self._sequence[product] += 3  # the book's own events use the numbers in between
        n = len(self.trades[product])
        trade = Trade(
            product,
            trade_id,
            self._sequence[product],
            T0 + timedelta(milliseconds=7 * trade_id) if self._clock is None else self._clock(),
            "buy" if trade_id % 2 else "sell",
            f"{43000 + trade_id % 1000}.{trade_id % 100:02d}",
            f"0.{(n % 9999) + 1:04d}",
            str(uuid.UUID(int=2 * trade_id + 1)),
            str(uuid.UUID(int=2 * trade_id + 2)),
        )
        self.trades[product].append(trade)
        return trade

    def all_trade_ids(self) -> dict[str, list[int]]:
        return {p: [t.trade_id for t in trades] for p, trades in self.trades.items()}

    async def _publish(self, trades: list[Trade]) -> None:
        for trade in trades:
            for frame in self._frames_for(trade):
                await self._broadcast(frame, trade.product)
            if trade.trade_id in self.faults.disconnect_after:
                for connection in list(self._subscribers):
                    connection.transport.abort()

    def _frames_for(self, trade: Trade) -> Iterator[str | bytes]:
        faults = self.faults
        if faults.silent or trade.trade_id in faults.skip_live:
            return
        if trade.trade_id in faults.reorder:
            self._held[trade.product] = trade
            return
        message = json.dumps(trade.match())
        yield message
        if trade.trade_id in faults.duplicate:
            yield message
        held = self._held[trade.product]
        if held is not None:
            self._held[trade.product] = None
            yield json.dumps(held.match())
        yield from faults.malformed_after.get(trade.trade_id, [])

    async def _broadcast(self, frame: str | bytes, product: str) -> None:
        """Send ``frame`` to the connections subscribed to ``product`` (as the feed does)."""
        for connection, products in list(self._subscribers.items()):
            if product in products:
                with contextlib.suppress(ConnectionClosed):
                    await self._send(connection, frame)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self.faults.silent:
                continue
            for product in self.products:
                with self._lock:
                    trades = self.trades[product]
                    if not trades:
                        continue
                    last = trades[-1]
                frame = json.dumps(
                    {
                        "type": "heartbeat",
                        "sequence": self._sequence[product],
                        "last_trade_id": last.trade_id,
                        "product_id": product,
                        "time": _iso(datetime.now(UTC)),
                    }
                )
                await self._broadcast(frame, product)

    # --- the feed -------------------------------------------------------------

    async def _send(self, connection: ServerConnection, frame: str | bytes) -> None:
        await connection.send(frame)
        self.frames_sent += 1

    async def _handler(self, connection: ServerConnection) -> None:
        self.connections_opened += 1
        try:
            raw = await asyncio.wait_for(connection.recv(), timeout=5)
            message = json.loads(raw)
            self.subscribe_messages.append(message)
            if message.get("type") != "subscribe":
                await self._send(
                    connection,
                    json.dumps(
                        {
                            "type": "error",
                            "message": "Failed to subscribe",
                            "reason": "type must be subscribe",
                        }
                    ),
                )
                return
            unknown = [p for p in message.get("product_ids", []) if p not in self.trades]
            if unknown:
                await self._send(
                    connection,
                    json.dumps(
                        {
                            "type": "error",
                            "message": "Failed to subscribe",
                            "reason": f"{unknown[0]} is not a valid product",
                        }
                    ),
                )
                return
            products = message["product_ids"]
            channels = [{"name": c, "product_ids": products} for c in message.get("channels", [])]
            await self._send(
                connection, json.dumps({"type": "subscriptions", "channels": channels})
            )
            for product in products:
                with self._lock:
                    last = self.trades[product][-1] if self.trades[product] else None
                if last is not None and not self.faults.silent:
                    await self._send(connection, json.dumps(last.match("last_match")))
            self._subscribers[connection] = set(products)
            await connection.wait_closed()
        except (ConnectionClosed, TimeoutError, ValueError):
            pass
        finally:
            self._subscribers.pop(connection, None)

    # --- REST -----------------------------------------------------------------

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        self.rest_requests += 1
        parts = urlsplit(request.path)
        segments = parts.path.strip("/").split("/")
        if self.faults.rest_429 > 0:
            self.faults.rest_429 -= 1
            headers = (
                {"Retry-After": self.faults.rest_retry_after}
                if self.faults.rest_retry_after
                else {}
            )
            return _json(
                http.HTTPStatus.TOO_MANY_REQUESTS,
                {"message": "Public rate limit exceeded"},
                headers,
            )
        if len(segments) != 3 or segments[0] != "products" or segments[2] != "trades":
            return _json(http.HTTPStatus.NOT_FOUND, {"message": "NotFound"})
        product = segments[1]
        if product not in self.trades:
            return _json(http.HTTPStatus.NOT_FOUND, {"message": "NotFound"})
        query = parse_qs(parts.query)
        try:
            limit = int(query.get("limit", ["100"])[0])
            after = int(query["after"][0]) if "after" in query else None
        except ValueError:
            return _json(http.HTTPStatus.BAD_REQUEST, {"message": "Invalid limit or after"})
        if not 1 <= limit <= 1000:
            return _json(http.HTTPStatus.BAD_REQUEST, {"message": "Invalid limit"})
        with self._lock:
            history = list(self.trades[product])
        if self.faults.rest_behind:
            history = history[: -self.faults.rest_behind]
        older = [t for t in history if after is None or t.trade_id < after]
        page = sorted(older, key=lambda t: -t.trade_id)[:limit]
        headers = {}
        if page:
            headers = {"cb-after": str(page[-1].trade_id), "cb-before": str(page[0].trade_id)}
        return _json(http.HTTPStatus.OK, [t.rest() for t in page], headers)


def _json(status: http.HTTPStatus, body: Any, headers: dict[str, str] | None = None) -> Response:
    data = json.dumps(body).encode()
    all_headers = Headers(
        {"Content-Type": "application/json", "Content-Length": str(len(data)), **(headers or {})}
    )
    return Response(status.value, status.phrase, all_headers, data)
