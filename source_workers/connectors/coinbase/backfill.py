"""Filling trade-id gaps from Coinbase's REST trades endpoint.

``GET {COINBASE_REST_URL}/products/{product}/trades?limit=N&after=ID`` returns
up to N trades with ids below ``ID``, newest first. A gap ``first..last`` is
filled by paging down by the lowest trade id of each page, starting at
``after=last+2``: when that first page does not hold trade ``last``, REST is
behind the feed and the gap is tried again later (five such answers before
what REST lacks is given up). Otherwise paging goes on until a page reaches
``first`` or comes back empty. Each trade in the gap is emitted as an
:class:`Internal` ``rest_trade`` through the runtime like a feed message, so
the ledger drops what the feed already delivered; then ``backfill_done``
resolves what REST did not have.

Timers (the grace period, the retry delay, the pauses between requests and
after a 429) follow the runtime's clock (``ctx.clock``, ``ctx.sleep``).

Rate limits: at least ``rest_min_interval_s`` between requests; a 429 (or
503) waits for ``Retry-After`` when given, else a doubling delay; connection
errors are retried the same way, ``rest_max_attempts`` times, after which
the session ends and reconnects (the gap is still open, so it is retried).
"""

from __future__ import annotations

from typing import Any

from foundation.errors import ConnectionLostError, MalformedFrameError, RateLimitedError
from source_workers.authoring import Internal
from source_workers.connectors.coinbase.settings import CoinbaseSettings
from source_workers.connectors.coinbase.trades import TradeLedger, trade_id_of
from source_workers.context import SourceContext

_RETRY_S = 5.0
"""An unfinished backfill is offered again after this long."""
_TRIES = 5
"""Backfills of a gap before what REST did not return is given up."""


async def backfill_loop(
    ctx: SourceContext, ledger: TradeLedger, settings: CoinbaseSettings
) -> None:
    """For the whole session: fill every gap once it has been open for the grace period."""
    while not ctx.stopping:
        for product, gap in ledger.due(ctx.clock.monotonic(), settings.backfill_grace_s):
            if gap.filling:
                continue  # split from a gap filled earlier in this round
            first, last, behind = gap.first, gap.last, gap.behind
            gap.filling = True
            outcome = "retry"
            try:
                outcome = await fill(
                    ctx, product, first, last, settings, final=behind + 1 >= _TRIES
                )
            finally:
                if outcome != "done":  # stopped, failed, cancelled or REST behind: again
                    ledger.retry_later(
                        product,
                        first,
                        last,
                        ctx.clock.monotonic() + _RETRY_S,
                        behind=outcome == "behind",
                    )
        if not await ctx.sleep(0.1):
            return


class _BadPage(ValueError):
    pass


async def fill(
    ctx: SourceContext,
    product: str,
    first: int,
    last: int,
    settings: CoinbaseSettings,
    *,
    final: bool = True,
) -> str:
    """Fetch and emit the trades of ``first..last``: ``"done"`` once the gap is resolved,
    ``"behind"`` when REST does not have trade ``last`` yet (it lags the feed; tried
    again, and only on the ``final`` try is what REST lacks given up), ``"retry"``
    when stopped or the page was bad.
    """
    labels = {"source": ctx.source, "product": product}
    if last - first + 1 > settings.max_backfill_trades:
        skipped_to = last - settings.max_backfill_trades
        ctx.log.error(
            "coinbase %s: gap of %d trades (%d..%d) is over max_backfill_trades; "
            "giving up trades %d..%d",
            product,
            last - first + 1,
            first,
            last,
            first,
            skipped_to,
        )
        await ctx.emit_raw(
            Internal("backfill_done", {"product_id": product, "first": first, "last": skipped_to}),
            "matches",
        )
        ctx.metrics.inc("coinbase_trades_given_up_total", skipped_to - first + 1, labels)
        first = skipped_to + 1
    ctx.log.info("coinbase %s: backfilling trades %d..%d from REST", product, first, last)
    url = f"{settings.rest_url}/products/{product}/trades"
    after = last + 2  # the first page must show `last` itself, or REST is behind
    fetched = 0
    first_page = True
    while after > first and not ctx.stopping:
        try:
            page = await _page(ctx, url, after, settings)
            ids = [_trade_id(trade) for trade in page]
        except (_BadPage, MalformedFrameError) as exc:
            # Quarantine the page (the resource does not recognise it: a dead letter)
            # and leave the gap open: it is offered again later, never skipped.
            ctx.log.warning("coinbase %s: bad REST page after=%d: %s", product, after, exc)
            bad = getattr(exc, "frame", None) or str(exc)
            await ctx.emit_raw(
                {"type": "rest_page", "after": after, "body": str(bad)[:65536]}, "matches"
            )
            return "retry"
        if first_page and max(ids, default=0) < last and not final:
            ctx.log.info(
                "coinbase %s: REST does not have trade %d yet (behind the feed); "
                "trying %d..%d later",
                product,
                last,
                first,
                last,
            )
            return "behind"
        first_page = False
        lowest = min(ids, default=after)
        for trade, trade_id in zip(page, ids, strict=True):
            if first <= trade_id <= last:
                fetched += 1
                await ctx.emit_raw(
                    Internal("rest_trade", {**trade, "product_id": product}), "matches"
                )
        if not page or lowest >= after:
            break
        after = lowest  # by trade id: a cursor header is not trusted to go down
        if not await ctx.sleep(settings.rest_min_interval_s):
            return "retry"
    if ctx.stopping:
        return "retry"  # the gap stays open, ahead of the checkpoint: a restart refills it
    await ctx.emit_raw(
        Internal("backfill_done", {"product_id": product, "first": first, "last": last}), "matches"
    )
    ctx.metrics.inc("coinbase_trades_backfilled_total", fetched, labels)
    ctx.log.info("coinbase %s: backfill %d..%d fetched %d trades", product, first, last, fetched)
    return "done"


def _trade_id(trade: Any) -> int:
    if not isinstance(trade, dict):
        raise _BadPage(f"REST trade {str(trade)[:80]!r} is not an object")
    try:
        return trade_id_of(trade.get("trade_id"))
    except ValueError as exc:
        raise _BadPage(str(exc)) from None


async def _page(ctx: SourceContext, url: str, after: int, settings: CoinbaseSettings) -> list[Any]:
    delay = max(settings.rest_min_interval_s, 0.25)
    for attempt in range(1, settings.rest_max_attempts + 1):
        try:
            response = await ctx.http.get_json(
                url, {"limit": settings.rest_page_size, "after": after}
            )
            ctx.metrics.inc("coinbase_rest_requests_total", 1, {"source": ctx.source})
        except (RateLimitedError, ConnectionLostError) as exc:
            if attempt == settings.rest_max_attempts:
                raise
            wait = getattr(exc, "retry_after_s", None) or delay
            ctx.metrics.inc("coinbase_rest_retries_total", 1, {"source": ctx.source})
            ctx.log.warning("coinbase REST: %s; retrying in %.2f s", exc, wait)
            if not await ctx.sleep(wait):
                return []
            delay = min(delay * 2, 30.0)
            continue
        body = response.body
        if not isinstance(body, list):
            raise _BadPage(f"REST trades body is a {type(body).__name__}, not a list")
        return body
    return []
