"""Source ``coinbase``: the Coinbase Exchange public websocket feed.

``start`` connects to ``COINBASE_WS_URL``, subscribes to the ``matches`` and
``heartbeat`` channels for ``COINBASE_PRODUCTS``, starts the backfill helper
(which fills trade-id gaps from ``COINBASE_REST_URL``) and emits every frame.
``control`` handles the feed's own messages: ``subscriptions`` (logged) and
``error`` (a refused product stops the worker; any other error reconnects).
"""

from __future__ import annotations

import logging
from typing import Any

from foundation.errors import ConnectionLostError, ProviderRefusedError
from source_workers.connectors.coinbase.backfill import backfill_loop
from source_workers.connectors.coinbase.resources.matches import Matches
from source_workers.connectors.coinbase.settings import CoinbaseSettings
from source_workers.context import SourceContext

log = logging.getLogger(__name__)


def control(message: Any) -> bool:
    """The feed's protocol messages; True when consumed."""
    if not isinstance(message, dict):
        return False
    kind = message.get("type")
    if kind == "subscriptions":
        log.info("coinbase: subscribed: %s", message.get("channels"))
        return True
    if kind == "error":
        text = f"{message.get('message', '')}: {message.get('reason', '')}".strip(": ")
        if "not a valid product" in text or "Failed to subscribe" in text:
            raise ProviderRefusedError(
                f"coinbase refused the subscription: {text}", source="coinbase", reason=text
            )
        raise ConnectionLostError(f"coinbase feed error: {text}", url="coinbase", reason=text)
    return False


def subscribe_message(products: tuple[str, ...]) -> dict[str, Any]:
    return {
        "type": "subscribe",
        "product_ids": list(products),
        "channels": ["matches", "heartbeat"],
    }


async def start(ctx: SourceContext, *, matches: Matches) -> None:
    """One session: connect, subscribe, backfill gaps alongside, emit every frame."""
    settings: CoinbaseSettings = ctx.settings
    ledger = matches.ledger
    matches.clock = ctx.clock  # gaps are timed on the clock the backfill reads
    if not ledger.products:
        ledger.restore(ctx.checkpoint("matches"))
    ledger.new_session()
    async with await ctx.connect(settings.ws_url) as stream:
        await stream.send_json(subscribe_message(settings.products))
        ctx.spawn(backfill_loop(ctx, ledger, settings), "backfill")
        async for frame in stream:
            await ctx.emit_raw(frame)
