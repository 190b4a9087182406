"""The sink worker's order of work, on the in-memory staging provider and a table double."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Sequence
from typing import Any

import fastavro
import pytest

from foundation.clock import ManualClock
from foundation.errors import (
    BatchRejectedError,
    DeliveryUnknownError,
    StopError,
    WarehouseUnavailableError,
)
from sink_workers.inserts import RetryPolicy
from sink_workers.sink_metrics import publish_lag
from sink_workers.tables import TableSpec, table_spec
from sink_workers.targets import AvroTableTarget, TableTarget, Target
from sink_workers.worker import SinkWorker
from staging.checkpoints import partition_entries, resume_point
from staging.deadletters import H_CODE, H_ORIGIN, H_REASON
from staging.memory import InMemoryCheckpointStore, MemoryStagingProvider
from staging.offsets import Partition
from staging.protocol import StagingContext
from staging.schemas import SchemaCatalog
from tests.helpers import trade_resource, trades, unique


class Table:
    """A table double that deduplicates by token like ClickHouse, with injectable failures.

    It takes both kinds of insert: columns (the Python path) and Avro container
    files (ClickHouse's Avro input), which it reads with fastavro, refusing bytes
    that do not parse as ClickHouse would."""

    def __init__(
        self, spec: TableSpec, fail: Callable[[list[int]], Exception | None] = lambda ids: None
    ) -> None:
        self.spec = spec
        self.rows: list[int] = []
        self.tokens: list[str] = []
        self.fail = fail
        self.on_insert: Callable[[], None] = lambda: None

    def insert(self, columns: Sequence[Sequence[Any]], token: str) -> int:
        return self._insert(list(columns[self.spec.column_names.index("trade_id")]), token)

    def insert_avro(self, container: bytes, rows: int, token: str) -> int:
        try:
            records = list(fastavro.reader(io.BytesIO(container)))
        except Exception as exc:
            raise BatchRejectedError(f"avro::Exception: {exc}", code=1001) from None
        assert len(records) == rows
        return self._insert([r["trade_id"] for r in records], token)  # type: ignore[call-overload, index]

    def _insert(self, ids: list[int], token: str) -> int:
        self.on_insert()
        error = self.fail(ids)
        if error is not None:
            raise error
        if token not in self.tokens:
            self.tokens.append(token)
            self.rows.extend(ids)
        return len(ids)


def setup(
    catalog: SchemaCatalog, n: int, *, checkpoint_every: int | None = None, **table_args: Any
) -> tuple[MemoryStagingProvider, StagingContext, Table]:
    """n trades staged (in writes of ``checkpoint_every`` rows carrying {"upto": last row})."""
    provider = MemoryStagingProvider(catalog=catalog)
    resource = trade_resource(catalog)
    context = StagingContext(source=resource.source, resources=(resource,), group_id=unique("g"))
    rows = trades(n)
    with provider.allocate_session(context) as session:
        if checkpoint_every is None:
            session.writer().write_batch(rows)
        else:
            for start in range(0, n, checkpoint_every):
                part = rows[start : start + checkpoint_every]
                session.writer().write_batch(part, checkpoint={"upto": start + len(part) - 1})
    spec = table_spec(
        resource.schema.parsed["fields"],
        database="db",
        table="t",
        order_by=("product_id", "trade_id"),
    )
    return provider, context, Table(spec, **table_args)


def committed(provider: MemoryStagingProvider, context: StagingContext) -> int:
    topic = context.resources[0].topic.name
    return sum(
        provider.broker.committed(context.consumer_group, Partition(topic, p)) or 0
        for p in range(3)
    )


WRITE_PATH = "python"
"""Which target the tests write through; the ``write_path`` fixture sets it, so each
test runs once per path."""


@pytest.fixture(autouse=True, params=["python", "avro", "avro-in-turn"])
def write_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(sys.modules[__name__], "WRITE_PATH", request.param)
    return str(request.param)


def targets(context: StagingContext, table: Table) -> dict[str, Target]:
    resource = context.resources[0]
    avro = WRITE_PATH.startswith("avro")
    target = AvroTableTarget(table, resource.schema) if avro else TableTarget(table)
    return {resource.topic.name: target}


def run(
    provider: MemoryStagingProvider, context: StagingContext, table: Table, **kwargs: Any
) -> SinkWorker:
    with provider.allocate_session(context) as session:
        worker = SinkWorker(
            session,
            targets(context, table),
            chunk_size=100,
            sleep=lambda s: None,
            overlap=WRITE_PATH != "avro-in-turn",
            **kwargs,
        )
        worker.run(idle_timeout_s=0.05)
    return worker


def test_every_staged_row_is_written_before_its_offsets_are_committed(
    catalog: SchemaCatalog,
) -> None:
    """Rows land in the table; at each insert, nothing of that batch is committed yet."""
    provider, context, table = setup(catalog, 450)
    seen_commits: list[int] = []
    table.on_insert = lambda: seen_commits.append(committed(provider, context))
    worker = run(provider, context, table)
    assert sorted(table.rows) == sorted(r["trade_id"] for r in trades(450))
    assert committed(provider, context) == 450
    assert seen_commits == sorted(seen_commits) and seen_commits[-1] < 450
    assert worker.stats.rows_written == 450 and worker.stats.dead_letters == 0
    labels = {"resource": context.resources[0].name}
    assert worker.metrics.value("sink_rows_written_total", labels) == 450
    assert worker.metrics.value("sink_freshness_seconds", labels) is not None
    assert "ingest_sink_insert_seconds_count" in worker.metrics.render()


def test_transient_errors_are_retried_with_the_same_token(catalog: SchemaCatalog) -> None:
    """A warehouse that fails twice then recovers gets the identical insert again."""
    failures = iter(
        [WarehouseUnavailableError("down", code=210), WarehouseUnavailableError("down", code=252)]
    )
    provider, context, table = setup(catalog, 30, fail=lambda ids: next(failures, None))
    worker = run(provider, context, table)
    assert worker.stats.retries == 2
    assert sorted(table.rows) == sorted(r["trade_id"] for r in trades(30))
    assert len(table.tokens) == len(set(table.tokens))


def test_offsets_do_not_move_when_the_insert_keeps_failing(catalog: SchemaCatalog) -> None:
    """If the warehouse stays down past the retry budget, the worker fails and commits nothing."""
    provider, context, table = setup(
        catalog, 30, fail=lambda ids: WarehouseUnavailableError("down", code=210)
    )
    clock = ManualClock(step_s=5)
    with pytest.raises(WarehouseUnavailableError):
        run(
            provider,
            context,
            table,
            retry=RetryPolicy(initial_s=1, give_up_after_s=20),
            clock=clock,
        )
    assert committed(provider, context) == 0
    assert table.rows == []


def test_a_poison_record_is_isolated_and_dead_lettered(catalog: SchemaCatalog) -> None:
    """A record the warehouse refuses goes to the dead-letter topic; the rest of its batch is written."""
    poison = trades(60)[37]["trade_id"]
    provider, context, table = setup(
        catalog,
        60,
        fail=lambda ids: BatchRejectedError("Cannot parse", code=27) if poison in ids else None,
    )
    worker = run(provider, context, table)
    assert sorted(table.rows) == sorted(
        r["trade_id"] for r in trades(60) if r["trade_id"] != poison
    )
    assert committed(provider, context) == 60
    assert worker.stats.dead_letters == 1
    dlq = context.resources[0].dlq.name
    (letter,) = provider.broker.fetch(Partition(dlq, 0), 0, 10)
    headers = dict(letter.headers())
    assert headers[H_CODE] == b"27" and b"Cannot parse" in headers[H_REASON]
    assert headers[H_ORIGIN].startswith(context.resources[0].topic.name.encode() + b"[")
    assert letter.value is not None and letter.value.startswith(b"\xc3\x01")


def test_corrupt_staged_bytes_are_dead_lettered_and_committed_past(catalog: SchemaCatalog) -> None:
    """Undecodable bytes go to the dead-letter topic unchanged, and the sink moves on."""
    provider, context, table = setup(catalog, 10)
    topic = context.resources[0].topic.name
    provider.broker.append(topic, b"k", b"garbage", (), partition=1)
    run(provider, context, table)
    assert len(table.rows) == 10
    assert committed(provider, context) == 11
    (letter,) = provider.broker.fetch(Partition(context.resources[0].dlq.name, 0), 0, 10)
    assert letter.value == b"garbage" and dict(letter.headers())[H_CODE] == b"CorruptRecordError"


def test_a_body_that_does_not_parse_is_isolated_and_dead_lettered(
    catalog: SchemaCatalog, write_path: str
) -> None:
    """A known schema header on a body that is not that schema: the Python path finds it
    while reading; ClickHouse's Avro input refuses the block, and halving isolates the
    record. Either way it is dead-lettered with its bytes unchanged and the rest is
    written."""
    provider, context, table = setup(catalog, 40)
    resource = context.resources[0]
    bad = resource.schema.header + b"\xff\xff\xff"
    provider.broker.append(resource.topic.name, b"k", bad, (), partition=1)
    worker = run(provider, context, table)
    assert sorted(table.rows) == sorted(r["trade_id"] for r in trades(40))
    assert committed(provider, context) == 41 and worker.stats.dead_letters == 1
    (letter,) = provider.broker.fetch(Partition(resource.dlq.name, 0), 0, 10)
    assert letter.value == bad
    code = dict(letter.headers())[H_CODE]
    assert code == (b"CorruptRecordError" if write_path == "python" else b"1001")


def test_too_many_dead_letters_stop_the_worker(catalog: SchemaCatalog) -> None:
    """Above the dead-letter bound the worker stops, after committing what it handled."""
    provider, context, table = setup(
        catalog, 50, fail=lambda ids: BatchRejectedError("bad", code=6)
    )
    with pytest.raises(StopError, match="over the bound of 10%"):
        run(provider, context, table, min_dead_letters_to_stop=5)
    assert committed(provider, context) > 0


def test_checkpoints_are_saved_per_partition_and_resume_at_the_last_write(
    catalog: SchemaCatalog,
) -> None:
    """After the commit, per-partition entries let the source resume at the newest whole write."""
    provider, context, table = setup(catalog, 300, checkpoint_every=60)
    resource = context.resources[0]
    store = InMemoryCheckpointStore()
    with provider.allocate_session(context) as session:
        worker = SinkWorker(session, targets(context, table), chunk_size=70, checkpoints=store)
        worker.run(idle_timeout_s=0.05)
    entries = partition_entries(store, resource.source, resource.name)
    assert len(entries) >= 2  # the partitions the trades hash to
    assert resume_point(entries) == {"upto": 299}
    assert worker.stats.checkpoints_saved >= 3


class FlakyStore(InMemoryCheckpointStore):
    """A checkpoint store whose first ``failures`` saves are not confirmed (Kafka down past
    the delivery timeout)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.calls = 0

    def save(self, source: str, resource: str, checkpoint: dict[str, Any]) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise DeliveryUnknownError(
                "1 record(s) to ingest._checkpoints were not confirmed in time",
                topic="ingest._checkpoints",
                undelivered=1,
            )
        super().save(source, resource, checkpoint)


@pytest.mark.parametrize(
    ("chunk_size", "failures"), [(70, 2), (1_000, 1)], ids=["later-batches", "one-batch-then-stop"]
)
def test_a_checkpoint_save_the_store_cannot_confirm_is_kept_and_saved_later(
    catalog: SchemaCatalog, chunk_size: int, failures: int
) -> None:
    """The sink goes on; the entry is saved after a later batch, or at the latest when the
    sink stops. In the end the source resumes from the last write, as without the fault."""
    provider, context, table = setup(catalog, 300, checkpoint_every=60)
    resource = context.resources[0]
    store = FlakyStore(failures)
    with provider.allocate_session(context) as session:
        worker = SinkWorker(
            session, targets(context, table), chunk_size=chunk_size, checkpoints=store
        )
        worker.run(idle_timeout_s=0.05)
        unsaved = worker.health()["checkpoints_unsaved"]
    assert worker.metrics.value("sink_checkpoint_save_failures_total") == failures
    assert resume_point(partition_entries(store, resource.source, resource.name)) == {"upto": 299}
    assert sorted(table.rows) == sorted(r["trade_id"] for r in trades(300))
    assert unsaved == 0


def test_a_checkpoint_store_that_stays_down_costs_the_checkpoints_only(
    catalog: SchemaCatalog,
) -> None:
    """Every row is written and committed; no entry is saved, and /health says how many are
    kept. One failed save per batch (and one at stop): the sink does not wait on the store
    for each entry."""
    provider, context, table = setup(catalog, 300, checkpoint_every=60)
    store = FlakyStore(failures=10_000)
    with provider.allocate_session(context) as session:
        worker = SinkWorker(session, targets(context, table), chunk_size=70, checkpoints=store)
        worker.run(idle_timeout_s=0.05)
        unsaved = worker.health()["checkpoints_unsaved"]
    assert sorted(table.rows) == sorted(r["trade_id"] for r in trades(300))
    assert committed(provider, context) == 300
    assert store.load_all() == {}
    assert unsaved >= 2  # the partitions the trades hash to
    assert store.calls == worker.stats.batches + 1


class MovingStore(InMemoryCheckpointStore):
    """A checkpoint store that cannot confirm the first save of partition 2's entry. While
    that save waits, two more sinks join the group, so partition 2 moves to one of them
    (partitions are dealt round-robin: the first sink keeps partition 0 only); then
    ``after_move`` runs."""

    def __init__(
        self,
        provider: MemoryStagingProvider,
        context: StagingContext,
        after_move: Callable[[], None],
    ) -> None:
        super().__init__()
        self.provider, self.context, self.after_move = provider, context, after_move
        self.moved = False
        self.slots: list[str] = []

    def save(self, source: str, resource: str, checkpoint: dict[str, Any]) -> None:
        if resource.endswith("/2") and not self.moved:
            self.moved = True
            topic = self.context.resources[0].topic.name
            for _ in range(2):
                self.provider.broker.join(self.context.consumer_group, (topic,))
            self.after_move()
            raise DeliveryUnknownError(
                "1 record(s) to ingest._checkpoints were not confirmed in time",
                topic="ingest._checkpoints",
                undelivered=1,
            )
        self.slots.append(resource)
        super().save(source, resource, checkpoint)


@pytest.mark.parametrize("later_batch", [True, False], ids=["at-a-later-batch", "at-stop"])
def test_a_kept_entry_of_a_partition_that_moved_away_is_dropped(
    catalog: SchemaCatalog, later_batch: bool
) -> None:
    """Its new owner saves that partition's entries, and a late save by the old owner could
    overwrite a newer one. Dropped whether the sink saves next after a later batch of the
    partition it kept, or when it stops."""
    provider, context, table = setup(catalog, 300, checkpoint_every=60)
    resource = context.resources[0]
    with provider.allocate_session(context) as session:

        def stage_more() -> None:  # records for partition 0 too, which the sink keeps
            if later_batch:
                session.writer().write_batch(trades(360)[300:], checkpoint={"upto": 359})

        store = MovingStore(provider, context, stage_more)
        worker = SinkWorker(session, targets(context, table), chunk_size=1_000, checkpoints=store)
        worker.run(idle_timeout_s=0.05)
        unsaved = worker.health()["checkpoints_unsaved"]
    assert store.moved and worker.metrics.value("sink_checkpoint_save_failures_total") == 1
    assert unsaved == 0
    assert {slot.rsplit("/", 1)[1] for slot in store.slots} == {"0"}
    entries = partition_entries(store, resource.source, resource.name)
    assert list(entries) == [0]
    assert entries[0]["checkpoint"] == ({"upto": 359} if later_batch else {"upto": 299})


def test_no_checkpoint_is_saved_when_the_write_fails(catalog: SchemaCatalog) -> None:
    """A batch that was not written saves no checkpoint."""
    provider, context, table = setup(
        catalog,
        10,
        checkpoint_every=10,
        fail=lambda ids: WarehouseUnavailableError("down", code=210),
    )
    store = InMemoryCheckpointStore()
    clock = ManualClock(step_s=5)
    with provider.allocate_session(context) as session:
        worker = SinkWorker(
            session,
            targets(context, table),
            checkpoints=store,
            sleep=lambda s: None,
            retry=RetryPolicy(initial_s=1, give_up_after_s=10),
            clock=clock,
        )
        with pytest.raises(WarehouseUnavailableError):
            worker.run(idle_timeout_s=0.05)
    assert store.load_all() == {}


def test_a_refused_commit_does_not_stop_the_sink(catalog: SchemaCatalog) -> None:
    """A commit the group refuses (a rebalance) is logged and counted; the sink goes on."""
    provider, context, table = setup(catalog, 40)
    real_commit = provider.broker.commit
    refusals = iter([False])
    provider.broker.commit = lambda *a: next(refusals, None) is not False and real_commit(*a)  # type: ignore[method-assign]
    worker = run(provider, context, table)
    assert worker.metrics.value("sink_commit_failures_total") == 1
    assert sorted(table.rows) == sorted(r["trade_id"] for r in trades(40))


def test_token_changes_when_the_same_offsets_hold_other_records(catalog: SchemaCatalog) -> None:
    """A recreated topic reuses offsets; the token still tells its records from the old ones."""
    from sink_workers.batching import by_partition

    resource = trade_resource(catalog, partitions=1)
    context = StagingContext(source=resource.source, resources=(resource,), group_id=unique("g"))
    tokens = []
    for rows in (trades(20), trades(20, start=1_000)):  # the topic "recreated" with new data
        provider = MemoryStagingProvider(catalog=catalog)
        with provider.allocate_session(context) as session:
            session.writer().write_batch(rows)
            batch = next(session.reader().iter_batches(100, idle_timeout_s=0.1))
        (group,) = by_partition(batch.records)
        assert group.token == by_partition(batch.records)[0].token  # a retry: the same token
        tokens.append(group.token)
    assert tokens[0].split(":")[:3] == tokens[1].split(":")[:3]  # same topic, partition, offsets
    assert tokens[0] != tokens[1]


def test_stop_during_a_retry_wait_stops_without_committing(catalog: SchemaCatalog) -> None:
    """stop() while the warehouse is down ends the run at once with nothing committed."""
    import threading

    provider, context, table = setup(
        catalog, 20, fail=lambda ids: WarehouseUnavailableError("down", code=210)
    )
    with provider.allocate_session(context) as session:
        worker = SinkWorker(
            session,
            targets(context, table),
            retry=RetryPolicy(initial_s=0.05, max_s=0.05, give_up_after_s=60),
        )
        threading.Timer(0.3, worker.stop).start()
        with pytest.raises(StopError, match="stopped while retrying"):
            worker.run(idle_timeout_s=5)
    assert committed(provider, context) == 0


def test_lag_is_what_the_staged_topic_holds_beyond_the_commit(catalog: SchemaCatalog) -> None:
    """sink_lag_records per partition: 0 once everything is written; the reader's ends
    count records staged after its last commit."""
    provider, context, table = setup(catalog, 300)
    worker = run(provider, context, table)
    resource = context.resources[0]
    lags = {
        p: worker.metrics.value(
            "sink_lag_records",
            {"resource": resource.name, "topic": resource.topic.name, "partition": str(p)},
        )
        for p in range(3)
    }
    assert {v for v in lags.values() if v is not None} == {0}  # partitions with records
    with provider.allocate_session(context) as session:
        reader = session.reader()
        batch = next(reader.iter_batches(10, poll_timeout_s=0.01, idle_timeout_s=0.1), None)
        assert batch is None  # everything is committed
        session.writer().write_batch(trades(30, start=300))
        first = next(reader.iter_batches(5, poll_timeout_s=0.01, idle_timeout_s=0.1))
        committed = reader.commit(first)
        ends = reader.ends()
        assert sum(ends.values()) == 330
        assert sum(ends[p] - committed.get(p, ends[p]) for p in ends) > 0
    # What the worker publishes from those: the same difference, per committed partition.
    publish_lag(worker.metrics, ends, committed, {resource.topic.name: resource.name})
    published = {
        part: worker.metrics.value(
            "sink_lag_records",
            {"resource": resource.name, "topic": part.topic, "partition": str(part.partition)},
        )
        for part in committed
    }
    assert published == {part: ends[part] - committed[part] for part in committed}
    assert sum(v or 0 for v in published.values()) > 0


def test_the_next_batch_is_read_while_one_is_written_but_never_written_first(
    catalog: SchemaCatalog, write_path: str
) -> None:
    """With the insert thread, batch k+1 is fetched before batch k is committed (reading
    overlaps writing), yet none of batch k+1 is in the table when batch k commits; without
    it (``overlap=False``) each batch is committed before the next is read."""
    provider, context, table = setup(catalog, 300)
    events: list[tuple[str, set[int]]] = []

    class Reader:
        def __init__(self, reader: Any) -> None:
            self._reader = reader

        def __getattr__(self, name: str) -> Any:
            return getattr(self._reader, name)

        def iter_batches(self, *args: Any, **kwargs: Any) -> Any:
            for batch in self._reader.iter_batches(*args, **kwargs):
                if batch.records:
                    events.append(("read", {r.record["trade_id"] for r in batch.records}))
                yield batch

        def commit(self, batch: Any) -> Any:
            events.append(("commit", set(table.rows)))
            return self._reader.commit(batch)

    with provider.allocate_session(context) as session:
        session.reader = lambda: Reader(type(session).reader(session))  # type: ignore[method-assign]
        worker = SinkWorker(
            session,
            targets(context, table),
            chunk_size=100,
            overlap=write_path != "avro-in-turn",
        )
        worker.run(idle_timeout_s=0.05)
    assert sorted(table.rows) == sorted(r["trade_id"] for r in trades(300))
    kinds = [kind for kind, _ in events]
    if write_path == "avro-in-turn":
        assert kinds == ["read", "commit"] * 3
    else:
        assert kinds == ["read", "read", "commit", "read", "commit", "commit"]
    batches = [ids for kind, ids in events if kind == "read"]
    in_table = [ids for kind, ids in events if kind == "commit"]
    for k, rows in enumerate(in_table):  # at batch k's commit: batches 0..k, nothing later
        assert rows == set().union(*batches[: k + 1])
