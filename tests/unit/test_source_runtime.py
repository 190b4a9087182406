"""The Durable Runtime with in-memory staging and scripted sessions (no network)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from foundation.config import RuntimeSettings
from foundation.errors import (
    BrokerUnavailableError,
    ConnectionLostError,
    DeliveryRejectedError,
    SourceDefinitionError,
    UnknownResourceError,
)
from source_workers.authoring import Output, Source, define_resource, define_source
from source_workers.context import SourceContext
from source_workers.runtime import SourceRuntime
from source_workers.stager import GaveUp
from staging.memory import MemoryStagingProvider
from staging.offsets import Partition
from staging.protocol import StagingContext
from staging.resource import StagedResource
from staging.schemas import SchemaCatalog
from tests.helpers import trade, unique

Script = Callable[[SourceContext], Any]


def record_of(message: dict[str, Any]) -> dict[str, Any]:
    row = trade(message["i"])
    return {**row, "time": row["time"]}


def build(script: Script, process: Callable[[Any, int], Any] | None = None) -> Source:
    def default_process(message: Any, _at: int) -> Any:
        return Output([record_of(message)], {"i": message["i"]})

    resource = define_resource(
        name="trades",
        schema="coinbase/matches.avsc",
        key=("product_id",),
        id_fields=("product_id", "trade_id"),
        parse=lambda raw: raw if isinstance(raw, dict) and "i" in raw else None,
        process=process or default_process,
    )
    return define_source(name=unique("src"), resources=[resource], start=script)


class FaultySession:
    """A real in-memory session whose writers and dead-letter sender fail on demand."""

    def __init__(
        self,
        inner: Any,
        faults: Callable[[int], BaseException | None],
        letter_faults: Callable[[int], BaseException | None],
    ) -> None:
        self.inner, self.faults, self.letter_faults = inner, faults, letter_faults
        self.calls = 0
        self.letter_calls = 0

    def writer(self, name: str | None = None) -> Any:
        inner, session = self.inner.writer(name), self

        class Writer:
            def write_batch(self, rows: Any, *, checkpoint: Any = None) -> Any:
                session.calls += 1
                error = session.faults(session.calls)
                if error is not None:
                    raise error
                return inner.write_batch(rows, checkpoint=checkpoint)

        return Writer()

    def dead_letters(self) -> Any:
        inner, session = self.inner.dead_letters(), self

        class Sender:
            def send(self, letters: Any) -> None:
                session.letter_calls += 1
                error = session.letter_faults(session.letter_calls)
                if error is not None:
                    raise error
                inner.send(letters)

        return Sender()


def never(_n: int) -> BaseException | None:
    return None


def run(
    source: Source,
    faults: Callable[[int], BaseException | None] = never,
    letter_faults: Callable[[int], BaseException | None] = never,
    **settings: Any,
) -> tuple[SourceRuntime, list[Any], list[Any]]:
    """Run until the script stops the runtime; return staged records and dead letters."""
    catalog = SchemaCatalog.default()
    staged = StagedResource.define(
        source=source.name,
        name="trades",
        schema=catalog.load("coinbase/matches.avsc"),
        key=("product_id",),
        id_fields=("product_id", "trade_id"),
    )
    provider = MemoryStagingProvider(catalog=catalog)
    session = provider.allocate_session(StagingContext(source=source.name, resources=(staged,)))
    faulty: Any = FaultySession(session, faults, letter_faults)
    expect_error = settings.pop("expect_error", False)
    options = {"linger_s": 0.05, "backoff_initial_s": 0.01, "backoff_max_s": 0.05, **settings}
    runtime = SourceRuntime(source, faulty, settings=RuntimeSettings(**options), jitter=lambda: 0.5)
    error: Exception | None = None
    try:
        asyncio.run(asyncio.wait_for(runtime.run(), timeout=20))
    except Exception as exc:
        if not expect_error:
            raise
        error = exc
    records = []
    for batch in session.reader().iter_batches(10_000, idle_timeout_s=0):  # all are in
        records.extend(batch.records)
    letters = provider.broker.fetch(Partition(staged.dlq.name, 0), 0, 10_000)
    setattr(runtime, "error", error)  # noqa: B010 - for the tests that expect one
    return runtime, records, letters


def frames(*numbers: int) -> list[str]:
    return [json.dumps({"i": n}) for n in numbers]


def test_every_emitted_record_is_staged_with_the_newest_checkpoint() -> None:
    """Records are staged in order, and the last carrier holds the last checkpoint."""

    async def script(ctx: SourceContext) -> None:
        for frame in frames(*range(40)):
            await ctx.emit_raw(frame)
        ctx._runtime.stop()

    runtime, records, _ = run(build(script), batch_records=16)
    assert sorted(r.record["trade_id"] for r in records) == [1_000_000 + i for i in range(40)]
    carried = [r.checkpoint for r in records if r.checkpoint is not None]
    assert {"i": 39} in carried and runtime.stats.writes >= 2


def test_stop_stages_what_was_received() -> None:
    """Records still in the buffer at stop are staged before run() returns."""

    async def script(ctx: SourceContext) -> None:
        for frame in frames(1, 2, 3):
            await ctx.emit_raw(frame)
        ctx._runtime.stop()

    _, records, _ = run(build(script), batch_records=1000, linger_s=30)
    assert len(records) == 3


def test_bad_frames_are_dead_lettered_and_counted() -> None:
    """Non-JSON, NaN, too deep, and frames process() chokes on go to the DLQ; the rest stage."""

    def process(message: Any, _at: int) -> Any:
        if message["i"] == 13:
            raise KeyError("price")
        return [record_of(message)]

    async def script(ctx: SourceContext) -> None:
        for frame in [*frames(1), "{nope", '{"i": NaN}', "[" * 64 + "]" * 64, *frames(13, 2)]:
            await ctx.emit_raw(frame)
        ctx._runtime.stop()

    runtime, records, letters = run(build(script, process))
    assert [r.record["trade_id"] for r in records] == [1_000_001, 1_000_002]
    assert runtime.stats.dead_letters == 4 and len(letters) == 4
    reasons = [dict(letter.headers())["ingest_dlq_reason"].decode() for letter in letters]
    assert "KeyError" in reasons[3] and "nested 64 deep" in reasons[2]
    assert letters[0].value == b"{nope"
    labels = {"source": runtime.source.name, "resource": "trades"}
    assert runtime.metrics.value("source_dead_letters_total", labels) == 4


def test_a_record_the_schema_refuses_is_dead_lettered_and_the_rest_staged() -> None:
    """A row that does not fit the Avro schema is quarantined with its frame."""

    def process(message: Any, _at: int) -> Any:
        row = record_of(message)
        if message["i"] == 5:
            row["side"] = "sideways"
        return [row]

    async def script(ctx: SourceContext) -> None:
        for frame in frames(4, 5, 6):
            await ctx.emit_raw(frame)
        ctx._runtime.stop()

    _, records, letters = run(build(script, process))
    assert [r.record["trade_id"] for r in records] == [1_000_004, 1_000_006]
    assert letters[0].value == b'{"i": 5}'
    assert "side" in dict(letters[0].headers())["ingest_dlq_reason"].decode()


def test_a_wrong_process_result_stops_the_worker_with_names() -> None:
    """process() returning a bare dict is a wiring mistake: SourceDefinitionError."""

    async def script(ctx: SourceContext) -> None:
        await ctx.emit_raw(frames(1)[0])

    with pytest.raises(SourceDefinitionError, match=r"resource trades: process\(\) returned"):
        run(build(script, lambda message, _at: {"not": "a list"}))


def test_an_event_for_an_unknown_resource_stops_the_worker() -> None:
    """emit_raw naming an undeclared resource fails with its name and value."""

    async def script(ctx: SourceContext) -> None:
        await ctx.emit_raw({"i": 1}, resource="quotes")

    with pytest.raises(UnknownResourceError, match="'quotes' with value"):
        run(build(script))


def test_dropped_sessions_reconnect_with_backoff_and_lose_nothing() -> None:
    """A session that fails is started again after a delay; its records stay buffered."""
    sessions: list[int] = []

    async def script(ctx: SourceContext) -> None:
        sessions.append(1)
        n = len(sessions)
        await ctx.emit_raw(frames(n)[0])
        if n < 5:
            raise ConnectionLostError("dropped", url="ws://test", reason="test")
        ctx._runtime.stop()

    runtime, records, _ = run(build(script))
    assert len(sessions) == 5 and runtime.stats.sessions == 5
    assert sorted(r.record["trade_id"] for r in records) == [1_000_000 + i for i in range(1, 6)]
    reconnects = runtime.metrics.value("source_reconnects_total", {"source": runtime.source.name})
    assert reconnects == 4


def test_helpers_are_cancelled_when_the_session_ends() -> None:
    """Tasks spawned by a session do not outlive it (no leaked tasks across reconnects)."""
    cancelled: list[int] = []
    sessions: list[int] = []

    async def helper() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(1)
            raise

    async def script(ctx: SourceContext) -> None:
        sessions.append(1)
        ctx.spawn(helper(), "sleeper")
        await asyncio.sleep(0)  # the helper starts (its first step was scheduled first)
        if len(sessions) < 3:
            raise ConnectionLostError("dropped", url="ws://test", reason="test")
        ctx._runtime.stop()

    run(build(script))
    assert len(cancelled) == 3


def test_ignored_messages_are_counted_not_staged() -> None:
    """Messages no resource recognises (acks, pings) are counted as ignored."""

    async def script(ctx: SourceContext) -> None:
        await ctx.emit_raw('{"type": "pong"}')
        await ctx.emit_raw(frames(1)[0])
        ctx._runtime.stop()

    runtime, records, letters = run(build(script))
    assert runtime.stats.ignored == 1 and len(records) == 1 and letters == []


def test_a_checkpoint_function_is_called_when_its_rows_are_staged() -> None:
    """Output(records, fn): fn is called once per write, after every row it covers arrived."""
    calls: list[int] = []
    seen: list[int] = []

    def checkpoint() -> dict[str, int]:
        calls.append(1)
        return {"last": seen[-1]}

    def process(message: Any, _at: int) -> Any:
        seen.append(message["i"])
        return Output([record_of(message)], checkpoint)

    async def script(ctx: SourceContext) -> None:
        for frame in frames(*range(10)):
            await ctx.emit_raw(frame)
        ctx._runtime.stop()

    runtime, records, _ = run(build(script, process), batch_records=1000, linger_s=30)
    assert runtime.stats.writes == 1 and len(calls) == 1
    assert {r.checkpoint["last"] for r in records if r.checkpoint is not None} == {9}


def test_a_write_refused_for_good_stops_and_no_later_checkpoint_covers_it() -> None:
    """DeliveryRejectedError in a background or flusher write: the worker stops with it and
    nothing after the failed batch is staged (its checkpoint would cover the lost rows)."""

    async def script(ctx: SourceContext) -> None:
        for frame in frames(*range(3)):
            await ctx.emit_raw(frame)
        await ctx._runtime.stopping_event.wait()  # the flusher's write failed: stopping
        for frame in frames(*range(3, 7)):
            await ctx.emit_raw(frame)
        ctx._runtime.stop()

    def refuse_first(n: int) -> BaseException | None:
        return DeliveryRejectedError("refused", topic="t", code="X", failed=1) if n == 1 else None

    with pytest.raises(DeliveryRejectedError):
        run(build(script), refuse_first, batch_records=100)
    runtime, records, _ = run(build(script), refuse_first, batch_records=100, expect_error=True)
    assert records == [] and isinstance(getattr(runtime, "error"), DeliveryRejectedError)  # noqa: B009


def test_writes_failing_at_stop_are_retried_within_the_budget_then_given_up() -> None:
    """A broker outage across SIGTERM: retries go on until half the shutdown budget after the
    stop; once given up, nothing later is staged (no checkpoint past the lost rows)."""

    retried = threading.Event()

    def down(n: int) -> BaseException | None:
        if n >= 2:
            retried.set()
        return BrokerUnavailableError("down", bootstrap="k")

    async def script(ctx: SourceContext) -> None:
        for frame in frames(*range(3)):
            await ctx.emit_raw(frame)
        assert await asyncio.to_thread(retried.wait, 10)  # the first write failed twice
        for frame in frames(3, 4):
            await ctx.emit_raw(frame)
        ctx._runtime.stop()

    started = time.monotonic()
    runtime, records, _ = run(build(script), down, batch_records=3, shutdown_timeout_s=1.0)
    assert records == [] and isinstance(runtime.stager.broken, GaveUp)
    assert time.monotonic() - started < 5


def test_dead_letters_whose_send_failed_are_sent_later() -> None:
    """A failed dead-letter send keeps the letters for the next attempt."""

    sent = threading.Event()

    async def script(ctx: SourceContext) -> None:
        await ctx.emit_raw("{bad")
        assert await asyncio.to_thread(sent.wait, 10)  # sent on the third attempt, before stop
        ctx._runtime.stop()

    def flaky(n: int) -> BaseException | None:
        if n <= 2:
            return BrokerUnavailableError("down", bootstrap="k")
        sent.set()
        return None

    runtime, _, letters = run(build(script), letter_faults=flaky)
    assert len(letters) == 1 and runtime.stats.dead_letters == 1


def test_processing_waits_for_dead_letters_once_a_thousand_are_waiting() -> None:
    """Dead letters do not pile up: with 1,000 waiting, the next message waits for a send."""
    sends_seen: list[int] = []

    async def script(ctx: SourceContext) -> None:
        for _ in range(1_000):
            await ctx.emit_raw("{bad")
        sends_seen.append(ctx._runtime.stager.letters_waiting)
        await ctx.emit_raw("{bad")
        sends_seen.append(ctx._runtime.stager.letters_waiting)
        ctx._runtime.stop()

    runtime, _, letters = run(build(script), linger_s=30)
    assert sends_seen == [1_000, 1]  # the 1,001st message waited until 1,000 were sent
    assert len(letters) == 1_001 and runtime.stats.dead_letters == 1_001


def test_backpressure_waits_for_the_write_under_way_then_the_next_goes_to_the_background() -> None:
    """With a write under way and two batches waiting, processing waits for that write; once
    it is acknowledged, the waiting rows are written in the background and processing goes
    on meanwhile (it does not also wait for their write), in order, nothing lost."""
    gates = {1: threading.Event(), 2: threading.Event()}
    emitted: list[int] = []

    def faults(call: int) -> BaseException | None:
        if call in gates:
            gates[call].wait(10)
        return None

    def until(condition: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + 5
        while not condition():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.001)
        return True

    seen: dict[str, bool] = {}

    def conduct() -> None:
        # Write 1 (rows 0-9) is held; frame 29 fills two batches behind it and waits.
        seen["held"] = until(lambda: len(emitted) == 29)
        time.sleep(0.05)  # a negative: it stays there while write 1 is held
        seen["held"] = seen["held"] and len(emitted) == 29
        gates[1].set()
        # Write 2 (rows 10-29) is held too, yet processing goes on to the next wait.
        seen["went_on"] = until(lambda: len(emitted) >= 49)
        gates[2].set()

    async def script(ctx: SourceContext) -> None:
        for i, frame in enumerate(frames(*range(60))):
            await ctx.emit_raw(frame)
            emitted.append(i)
            await asyncio.sleep(0)  # as a socket's reads let the background writes start
        ctx._runtime.stop()

    conductor = threading.Thread(target=conduct)
    conductor.start()
    try:
        runtime, records, _ = run(build(script), faults, batch_records=10, linger_s=30)
    finally:
        for gate in gates.values():
            gate.set()
        conductor.join()
    assert seen == {"held": True, "went_on": True}
    ids = [r.record["trade_id"] for r in records]
    assert sorted(ids) == [1_000_000 + i for i in range(60)]
    for partition in {r.partition for r in records}:  # in order within each partition
        mine = [r.record["trade_id"] for r in records if r.partition == partition]
        assert mine == sorted(mine)
    assert runtime.stats.writes >= 3
