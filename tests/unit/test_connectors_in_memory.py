"""Each connector driven through the in-memory transports and a manual clock: the test
plays the provider (websocket frames, REST answers) and moves time; no socket, no
subprocess, no sleep. The process-level tests (tests/integration) keep real frames,
deflate, kill -9 and signals."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from foundation.errors import ProviderRefusedError
from source_workers.connectors.coinbase.pipeline import build as build_coinbase
from source_workers.connectors.coinbase.settings import CoinbaseSettings
from source_workers.connectors.supabase.pipeline import build as build_supabase
from source_workers.connectors.supabase.settings import SupabaseSettings
from source_workers.connectors.usgs.pipeline import build as build_usgs
from source_workers.connectors.usgs.source import UsgsSettings
from source_workers.transport.memory import HttpRequest, Reply
from tests.servers.usgs import quake
from tests.unit.memory_source import MemoryRun, run_for_at_most, until

# --- Coinbase ------------------------------------------------------------------

REST = "http://exchange.test"
TRADES = f"{REST}/products/BTC-USD/trades"


def trade(trade_id: int, kind: str = "match") -> dict[str, Any]:
    return {
        "type": kind,
        "trade_id": trade_id,
        "maker_order_id": str(UUID(int=trade_id)),
        "taker_order_id": str(UUID(int=trade_id + 1)),
        "side": "buy" if trade_id % 2 else "sell",
        "size": "0.01",
        "price": f"{60000 + trade_id}.00",
        "product_id": "BTC-USD",
        "sequence": 10 * trade_id,
        "time": f"2026-11-22T03:00:{trade_id % 60:02d}.000000Z",
    }


def rest_trades(request: HttpRequest, newest: int = 110) -> Reply:
    """``GET /products/BTC-USD/trades?after=ID&limit=N``: trades 100..``newest`` below
    ``after``, newest first (REST has what the feed skipped)."""
    after, limit = int(request.params["after"]), int(request.params["limit"])
    ids = [i for i in range(newest, 99, -1) if i < after][:limit]
    rows = [{k: trade(i)[k] for k in ("time", "trade_id", "price", "size", "side")} for i in ids]
    return Reply(body=rows)


def coinbase(**overrides: Any) -> tuple[Any, CoinbaseSettings]:
    values: dict[str, Any] = {
        "ws_url": "wss://feed.exchange.test",
        "rest_url": REST,
        "products": ("BTC-USD",),
        "backfill_grace_s": 2.0,
        "rest_min_interval_s": 0.15,
        "rest_page_size": 3,
        **overrides,
    }
    settings = CoinbaseSettings(**values)
    return build_coinbase("coinbase", settings), settings


def test_coinbase_fills_a_sequence_gap_from_rest_on_the_clock() -> None:
    """Trades 103..105 never come on the feed: once the gap is two seconds old (the grace,
    on the clock) the backfill pages REST down from below 107, three trades a page, waiting
    rest_min_interval_s between pages; every trade is staged once and the checkpoint
    reaches 107."""

    async def main() -> None:
        source, settings = coinbase()
        async with MemoryRun(source, settings) as run:
            run.http.route(TRADES, rest_trades)
            feed = await run.websocket.accept()
            subscribe = await feed.receive_json()
            assert subscribe == {
                "type": "subscribe",
                "product_ids": ["BTC-USD"],
                "channels": ["matches", "heartbeat"],
            }
            feed.send_json({"type": "subscriptions", "channels": []})
            for trade_id in (100, 101, 102, 106, 107):
                feed.send_json(trade(trade_id))
            await until(lambda: run.runtime.stats.frames == 6, "the feed's frames processed")
            await run.advance(1.9)
            assert run.http.requests == []  # the grace is not over: a late trade may come
            await run.advance(0.1)
            (first,) = await run.http.wait_requests(1)
            assert first.params == {"limit": "3", "after": "107"}  # must show 105 itself
            await run.advance(0.1)
            assert len(run.http.requests) == 1  # rest_min_interval_s between pages
            await run.advance(0.05)
            second = (await run.http.wait_requests(2))[1]
            assert second.params == {"limit": "3", "after": "104"}
            await run.advance(0.15)
            await until(lambda: not source.resources[0].process.ledger.open_gaps(), "gap closed")
            stats = await run.stop()
        ids = [r.record["trade_id"] for r in run.staged("matches")]
        assert sorted(ids) == list(range(100, 108)) and stats.dead_letters == 0
        checkpoints = [r.checkpoint for r in run.staged("matches") if r.checkpoint]
        assert checkpoints[-1] == {"products": {"BTC-USD": {"trade_id": 107, "sequence": 1070}}}

    run_for_at_most(main(), 10)


def test_coinbase_rest_behind_the_feed_is_tried_again_not_given_up() -> None:
    """REST does not have the gap's trades yet (its newest is below the gap's last): the
    gap is offered again five seconds of the clock later, not given up; once REST has
    them they are staged, and nothing was resolved as missing."""

    async def main() -> None:
        source, settings = coinbase(backfill_grace_s=0.0)
        caught_up = False

        def lagging(request: HttpRequest) -> Reply:
            return rest_trades(request, newest=110 if caught_up else 102)

        async with MemoryRun(source, settings) as run:
            run.http.route(TRADES, lagging)
            feed = await run.websocket.accept()
            await feed.receive_json()
            for trade_id in (100, 101, 102, 105):
                feed.send_json(trade(trade_id))
            await until(lambda: run.runtime.stats.frames == 4, "the feed's frames processed")
            await run.advance(0.1)
            await run.http.wait_requests(1)
            await run.advance(4.9)
            assert len(run.http.requests) == 1  # behind: offered again 5 s later
            caught_up = True
            await run.advance(0.1)
            await run.http.wait_requests(2)
            ledger = source.resources[0].process.ledger
            await until(lambda: not ledger.open_gaps(), "the gap filled")
            await run.stop()
        assert sorted(r.record["trade_id"] for r in run.staged("matches")) == list(range(100, 106))
        assert ledger.stats.missing_resolved == 0

    run_for_at_most(main(), 10)


def test_coinbase_waits_out_a_429_for_its_retry_after_on_the_clock() -> None:
    """REST answers 429 with Retry-After: 7; the next request comes seven seconds of the
    clock later, not before."""

    async def main() -> None:
        source, settings = coinbase(backfill_grace_s=0.0)
        async with MemoryRun(source, settings) as run:
            run.http.route(TRADES, Reply(status=429, headers={"Retry-After": "7"}), Reply(body=[]))
            feed = await run.websocket.accept()
            await feed.receive_json()
            feed.send_json(trade(100))
            feed.send_json(trade(102))
            await until(lambda: run.runtime.stats.frames == 2, "the feed's frames processed")
            await run.advance(0.1)
            await run.http.wait_requests(1)
            await run.advance(6.9)
            assert len(run.http.requests) == 1
            await run.advance(0.1)
            await run.http.wait_requests(2)
            metrics = run.runtime.metrics
            assert metrics.value("coinbase_rest_retries_total", {"source": "coinbase"}) == 1
            await run.stop()

    run_for_at_most(main(), 10)


def test_coinbase_a_silent_feed_is_dropped_after_the_idle_timeout_and_reconnected() -> None:
    """No frame for idle_timeout_s of the clock: the session ends, and after the backoff
    (on the clock too) the source connects and subscribes again."""

    async def main() -> None:
        source, settings = coinbase()
        async with MemoryRun(source, settings, idle_timeout_s=30.0) as run:
            first = await run.websocket.accept()
            await first.receive_json()
            await run.advance(29.0)
            assert first.open
            await run.advance(1.0)
            await until(lambda: not first.open, "the silent connection closed")
            assert "idle timeout" in (first.ended or "")
            await run.advance(1.0)  # the backoff: initial 1 s, jitter 0.5 -> at most 1 s
            second = await run.websocket.accept()
            assert (await second.receive_json())["type"] == "subscribe"
            reconnects = run.runtime.metrics.value(
                "source_reconnects_total", {"source": "coinbase"}
            )
            assert reconnects == 1
            await run.stop()

    run_for_at_most(main(), 10)


# --- Supabase ------------------------------------------------------------------

SUPABASE = "https://demo.supabase.test"
KEY = "service-role-test-key"


def change(operation: str, row_id: int, stamp: str, **columns: Any) -> dict[str, Any]:
    record = {"id": row_id, "updated_at": stamp, **columns} if operation != "DELETE" else {}
    data = {
        "schema": "public",
        "table": "projects",
        "commit_timestamp": stamp,
        "type": operation,
        "record": record,
        "old_record": {"id": row_id} if operation != "INSERT" else {},
        "columns": [{"name": k, "type": "text"} for k in sorted(record)],
        "errors": None,
    }
    return {
        "topic": "realtime:durable-ingest",
        "event": "postgres_changes",
        "payload": {"data": data, "ids": [1]},
        "ref": None,
    }


def test_supabase_joins_backfills_heartbeats_and_stages_changes() -> None:
    """The Phoenix flow on the clock: join (with the key and the table), the PostgREST
    backfill from the checkpoint less the margin once joined, postgres_changes staged as
    change rows, a heartbeat every 25 s; a heartbeat left unanswered when the next is due
    ends the session, and the source reconnects and joins again."""

    async def main() -> None:
        settings = SupabaseSettings(
            url=SUPABASE, service_role_key=KEY, tables="projects", backfill=True
        )
        checkpoint = {"commit_timestamp": "2026-12-01T12:00:00Z"}
        source = build_supabase("supabase", settings)
        async with MemoryRun(source, settings, checkpoints={"projects": checkpoint}) as run:
            run.http.route(
                f"{SUPABASE}/rest/v1/projects",
                Reply(body=[{"id": 1, "name": "old", "updated_at": "2026-12-01T11:59:30Z"}]),
            )
            realtime = await run.websocket.accept()
            assert realtime.url.startswith("wss://demo.supabase.test/realtime/v1/websocket?")
            join = await realtime.receive_json()
            assert join["event"] == "phx_join" and join["payload"]["access_token"] == KEY
            tables = join["payload"]["config"]["postgres_changes"]
            assert tables == [{"event": "*", "schema": "public", "table": "projects"}]
            assert run.http.requests == []  # the backfill waits for the join
            realtime.send_json(
                {
                    "topic": join["topic"],
                    "event": "phx_reply",
                    "payload": {"status": "ok", "response": {}},
                    "ref": join["ref"],
                }
            )
            (backfill,) = await run.http.wait_requests(1)
            assert backfill.params["updated_at"] == "gte.2026-12-01T11:59:00.000000Z"
            assert backfill.headers == {"apikey": KEY, "Authorization": f"Bearer {KEY}"}
            realtime.send_json(change("INSERT", 2, "2026-12-01T12:00:05.000000Z", name="new"))
            realtime.send_json(change("DELETE", 1, "2026-12-01T12:00:06.000000Z"))
            await run.advance(25.0)
            heartbeat = await realtime.receive_json()
            assert (heartbeat["topic"], heartbeat["event"]) == ("phoenix", "heartbeat")
            realtime.send_json(
                {
                    "topic": "phoenix",
                    "event": "phx_reply",
                    "payload": {"status": "ok", "response": {}},
                    "ref": heartbeat["ref"],
                }
            )
            await run.advance(25.0)
            unanswered = await realtime.receive_json()
            assert unanswered["event"] == "heartbeat" and realtime.open
            await run.advance(25.0)
            await until(lambda: not realtime.open, "the session ended")
            await run.advance(1.0)  # the backoff
            again = await run.websocket.accept()
            assert (await again.receive_json())["event"] == "phx_join"
            await run.stop()
        rows = [(r.record["id"], r.record["operation"]) for r in run.staged("projects")]
        assert sorted(rows) == [(1, "DELETE"), (1, "SNAPSHOT"), (2, "INSERT")]
        assert rows.index((1, "SNAPSHOT")) < rows.index((1, "DELETE"))  # one key, in order

    run_for_at_most(main(), 10)


def test_supabase_an_unanswered_join_ends_the_session_after_the_join_timeout() -> None:
    """join_timeout_s of the clock without a phx_reply: the session ends (reconnect)."""

    async def main() -> None:
        settings = SupabaseSettings(url=SUPABASE, service_role_key=KEY, join_timeout_s=10.0)
        async with MemoryRun(build_supabase("supabase", settings), settings) as run:
            realtime = await run.websocket.accept()
            await realtime.receive_json()
            await run.advance(9.9)
            assert realtime.open
            await run.advance(0.1)
            await until(lambda: not realtime.open, "the session ended")
            await run.advance(1.0)
            await run.websocket.accept()
            await run.stop()

    run_for_at_most(main(), 10)


# --- USGS ----------------------------------------------------------------------

FEED = "https://usgs.test/all_hour.geojson"


def collection(*features: dict[str, Any]) -> Reply:
    return Reply(body={"type": "FeatureCollection", "features": list(features)})


def test_usgs_polls_on_the_clock_and_stages_only_new_revisions() -> None:
    """A poll every poll_interval_s of the clock; each stages the revisions it had not
    seen (a new quake, a quake revised), not the whole window; a 503 ends the session
    and the next one polls again after the backoff, still remembering what it staged."""

    async def main() -> None:
        settings = UsgsSettings(url=FEED, poll_interval_s=60.0)
        async with MemoryRun(build_usgs("usgs", settings), settings) as run:
            run.http.route(
                FEED,
                collection(quake(0), quake(1)),
                collection(quake(0), quake(1), quake(2)),
                Reply(status=503),
                collection(quake(0), quake(1, revision=1), quake(2)),
            )
            await run.http.wait_requests(1)
            await run.advance(59.0)
            assert len(run.http.requests) == 1
            await run.advance(1.0)
            await run.http.wait_requests(2)
            await run.advance(60.0)
            await run.http.wait_requests(3)  # 503: the session ends
            await run.advance(1.0)  # the backoff
            await run.http.wait_requests(4)
            await run.stop()
        staged = [(r.record["id"], r.record["updated"]) for r in run.staged("earthquakes")]
        revisions = [quake(0), quake(1), quake(2), quake(1, revision=1)]
        expected = [
            (q["id"], datetime.fromtimestamp(q["properties"]["updated"] / 1000, UTC))
            for q in revisions
        ]
        assert sorted(staged) == sorted(expected)  # each revision once, the window never again

    run_for_at_most(main(), 10)


def test_coinbase_a_refused_handshake_stops_the_worker() -> None:
    """A 401 on the websocket handshake is a refusal: the worker ends with it, nothing
    staged, no reconnect."""

    async def main() -> None:
        source, settings = coinbase()
        async with MemoryRun(source, settings) as run:
            run.websocket.refuse_next(401)
            error = await run.ended()
        assert isinstance(error, ProviderRefusedError) and "HTTP 401" in str(error)
        assert run.staged("matches") == [] and run.websocket.connections == []

    run_for_at_most(main(), 10)
