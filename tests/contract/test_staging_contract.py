"""The StagingProvider contract, identical for the in-memory and the Kafka provider."""

from __future__ import annotations

import time
from collections import defaultdict
from decimal import Decimal

import pytest

from foundation.errors import (
    CorruptRecordError,
    RecordTooLargeError,
    SchemaMismatchError,
    StagingClosedError,
    UnknownResourceError,
)
from staging.protocol import RecordReader, StagedBatch, StagingContext
from staging.schemas import SchemaCatalog
from tests.contract.conftest import Harness
from tests.helpers import trade_resource, trades, unique


def read(
    reader: RecordReader,
    want: int,
    *,
    timeout_s: float = 30.0,
    commit: bool = False,
    on_corrupt: str = "raise",
    into: list[StagedBatch] | None = None,
    decode: bool = True,
) -> list[StagedBatch]:
    """Batches until ``want`` records (plus corrupt ones) arrived or the timeout passed;
    with ``into``, each batch is appended there as it arrives (kept if a read raises)."""
    batches: list[StagedBatch] = [] if into is None else into
    got = 0
    deadline = time.monotonic() + timeout_s
    while got < want and time.monotonic() < deadline:
        for batch in reader.iter_batches(
            500, poll_timeout_s=0.2, idle_timeout_s=1.0, on_corrupt=on_corrupt, decode=decode
        ):  # type: ignore[arg-type]
            batches.append(batch)
            got += len(batch.records) + len(batch.corrupt)
            if commit:
                reader.commit(batch)
            if got >= want:
                break
    return batches


def records_of(batches: list[StagedBatch]) -> list[dict]:  # type: ignore[type-arg]
    return [r.record for b in batches for r in b.records]


def context(catalog: SchemaCatalog, partitions: int = 3) -> StagingContext:
    resource = trade_resource(catalog, partitions=partitions)
    return StagingContext(source=resource.source, resources=(resource,), group_id=unique("group"))


def test_written_rows_are_read_back_in_key_order(harness: Harness, catalog: SchemaCatalog) -> None:
    """Every staged row is read back once, in write order within each key."""
    ctx = context(catalog)
    rows = trades(300)
    with harness.provider.allocate_session(ctx) as session:
        result = session.writer().write_batch(rows[:150])
        session.writer().write_batch(rows[150:])
        assert result.count == 150 and len(set(result.event_ids)) == 150
        got = records_of(read(session.reader(), 300))
    assert sorted(r["trade_id"] for r in got) == [r["trade_id"] for r in rows]
    by_key: dict[str, list[int]] = defaultdict(list)
    for r in got:
        by_key[r["product_id"]].append(r["trade_id"])
    assert all(ids == sorted(ids) for ids in by_key.values())


def test_bad_row_stages_nothing_of_its_batch(harness: Harness, catalog: SchemaCatalog) -> None:
    """A row that does not fit the schema fails the batch before anything is staged."""
    ctx = context(catalog)
    rows = trades(10)
    rows[7] = {**rows[7], "price": "NaN-ish"}
    with harness.provider.allocate_session(ctx) as session:
        with pytest.raises(SchemaMismatchError, match="field 'price'"):
            session.writer().write_batch(rows)
        big = trades(3)
        big[2] = {**big[2], "taker_order_id": "x" * 2_000_000}
        with pytest.raises(RecordTooLargeError, match="limit of 1000000 bytes"):
            session.writer().write_batch(big)
        session.writer().write_batch(trades(2, start=100))
        got = records_of(read(session.reader(), 2, timeout_s=15))
    assert sorted(r["trade_id"] for r in got) == [1_000_100, 1_000_101]


def test_unknown_resource_is_refused(harness: Harness, catalog: SchemaCatalog) -> None:
    """Asking for a writer of an undeclared resource raises UnknownResourceError."""
    with harness.provider.allocate_session(context(catalog)) as session:
        with pytest.raises(UnknownResourceError, match="no resource 'level2'"):
            session.writer("level2")


def test_uncommitted_batches_are_read_again(harness: Harness, catalog: SchemaCatalog) -> None:
    """Offsets move only on commit: a new member re-reads what was not committed."""
    ctx = context(catalog, partitions=1)
    with harness.provider.allocate_session(ctx) as session:
        session.writer().write_batch(trades(20))
        first = session.reader()
        assert len(records_of(read(first, 20))) == 20
        first.close()
        second = session.reader()
        batches = read(second, 20)
        assert len(records_of(batches)) == 20
        for batch in batches:
            second.commit(batch)
        committed = second.committed()
        assert list(committed.values()) == [20]
        second.close()
        session.writer().write_batch(trades(5, start=20))
        third = session.reader()
        got = records_of(read(third, 5))
    assert [r["trade_id"] for r in got] == [1_000_020 + i for i in range(5)]


def test_batches_carry_the_offsets_they_make_safe(harness: Harness, catalog: SchemaCatalog) -> None:
    """A batch's commit offsets are last+1 of exactly the partitions it read."""
    ctx = context(catalog, partitions=1)
    with harness.provider.allocate_session(ctx) as session:
        session.writer().write_batch(trades(7))
        reader = session.reader()
        batches = read(reader, 7)
        last = batches[-1]
        ((part, next_offset),) = last.commit_offsets.items()
        assert part.topic == ctx.resources[0].topic.name and part.partition == 0
        assert next_offset == 7
        assert reader.commit(last) == {part: 7}
        assert reader.commit(last) == {}  # already committed: nothing moves


def test_checkpoint_travels_with_the_batch(harness: Harness, catalog: SchemaCatalog) -> None:
    """The checkpoint given with a write comes back on the batch that read it."""
    ctx = context(catalog, partitions=1)
    with harness.provider.allocate_session(ctx) as session:
        session.writer().write_batch(trades(4), checkpoint={"trade_id": 1_000_003, "sequence": 9})
        batches = read(session.reader(), 4)
    carried = [c for batch in batches for c in batch.checkpoints]
    assert len(carried) == 1
    (found,) = carried
    assert found.checkpoint == {"sequence": 9, "trade_id": 1_000_003}
    assert found.resource == ctx.resources[0].name
    assert (found.topic, found.partition, found.offset) == (ctx.resources[0].topic.name, 0, 3)


def test_staged_records_are_restaged_as_they_are_without_checkpoints(
    harness: Harness, catalog: SchemaCatalog
) -> None:
    """``write_staged`` puts records read from one topic on another undecoded: the same
    keys, values and event ids, partitioned by key over the destination's partitions, and
    no checkpoint headers (a stream target's write)."""
    source_ctx = context(catalog, partitions=3)
    rows = trades(40)
    with harness.provider.allocate_session(source_ctx) as session:
        session.writer().write_batch(rows, checkpoint={"trade_id": 1})
        read_back = [r for b in read(session.reader(), 40, decode=False) for r in b.records]
    destination_ctx = context(catalog, partitions=2)
    destination = destination_ctx.resources[0]
    with harness.provider.allocate_session(destination_ctx) as session:
        result = session.writer().write_staged(read_back)
        assert result.count == 40 and result.topic == destination.topic.name
        assert sorted(result.event_ids) == sorted(r.event_id for r in read_back)
        copied = [r for b in read(session.reader(), 40) for r in b.records]
    assert len(copied) == 40
    assert {(r.key, r.value) for r in copied} == {(r.key, r.value) for r in read_back}
    assert sorted(r.record["trade_id"] for r in copied) == [t["trade_id"] for t in rows]
    assert all(r.carried() is None for r in copied)
    assert {r.event_id for r in copied} == {r.event_id for r in read_back}
    by_key = {r.key: r.partition for r in copied}
    assert len(set(by_key.values())) == 2  # both partitions, one per key
    assert all(r.partition == by_key[r.key] and r.topic == destination.topic.name for r in copied)


def test_each_source_instance_s_checkpoint_travels_with_the_batch(
    harness: Harness, catalog: SchemaCatalog
) -> None:
    """Processes of one source (instances a and b, and one without a name) stage into one
    partition: per instance, a batch carries the newest checkpoint of each, named, not only
    the last one written (which is all a sink of an unnamed source asks for)."""
    ctx = context(catalog, partitions=1)
    a = StagingContext(source=ctx.source, resources=ctx.resources, instance="a")
    b = StagingContext(source=ctx.source, resources=ctx.resources, instance="b")
    with (
        harness.provider.allocate_session(a) as first,
        harness.provider.allocate_session(b) as second,
        harness.provider.allocate_session(ctx) as unnamed,
    ):
        first.writer().write_batch(trades(2), checkpoint={"n": 1})
        first.writer().write_batch(trades(2, start=2), checkpoint={"n": 2})
        second.writer().write_batch(trades(2, start=4), checkpoint={"n": 10})
        first.writer().write_batch(trades(2, start=6), checkpoint={"n": 3})
        unnamed.writer().write_batch(trades(2, start=8), checkpoint={"n": 100})
    with harness.provider.allocate_session(ctx) as session:
        batches = read(session.reader(), 10)
    assert sum(len(batch) for batch in batches) == 10
    newest = {
        c.instance: (c.checkpoint, c.offset)
        for batch in batches
        for c in batch.carried_checkpoints(per_instance=True)
    }
    assert newest == {"a": ({"n": 3}, 7), "b": ({"n": 10}, 5), "": ({"n": 100}, 9)}
    last = [c for batch in batches for c in batch.checkpoints][-1]
    assert (last.instance, last.checkpoint) == ("", {"n": 100})


def test_two_members_split_partitions_and_read_everything(
    harness: Harness, catalog: SchemaCatalog
) -> None:
    """Two readers of one group own disjoint partitions and together read every row."""
    ctx = context(catalog, partitions=4)
    with harness.provider.allocate_session(ctx) as session:
        a, b = session.reader(), session.reader()
        session.writer().write_batch(trades(400))
        seen: list[int] = []
        deadline = time.monotonic() + 60
        # Both members poll until every row is read and the group has settled with both of
        # them owning partitions: the first member to join may read everything before the
        # second is assigned (Apache Kafka delays nothing for a group of this test's kind).
        while time.monotonic() < deadline and not (
            len(seen) >= 400 and a.assignment() and b.assignment()
        ):
            for reader in (a, b):
                for batch in reader.iter_batches(200, poll_timeout_s=0.2, idle_timeout_s=0.5):
                    seen.extend(r.record["trade_id"] for r in batch.records)
                    reader.commit(batch)
        assert a.assignment().isdisjoint(b.assignment())
        assert a.assignment() and b.assignment()
    assert sorted(set(seen)) == sorted(r["trade_id"] for r in trades(400))


def test_corrupt_bytes_raise_then_can_be_collected(
    harness: Harness, catalog: SchemaCatalog
) -> None:
    """Corrupt staged bytes raise a typed error naming their position; nothing is skipped.

    Two partitions with records on both sides of the corrupt one: the rewind
    after the error must cover every partition the failed chunk touched.
    """
    ctx = context(catalog, partitions=2)
    topic = ctx.resources[0].topic.name
    with harness.provider.allocate_session(ctx) as session:
        session.writer().write_batch(trades(200))
        # How many records partition 0 holds before the corrupt one goes in.
        probe = session.reader()
        before = sum(1 for b in read(probe, 200) for r in b.records if r.partition == 0)
        probe.close()
        harness.raw_append(topic, 0, b"k", b"not avro at all")
        session.writer().write_batch(trades(200, start=200))
        reader = session.reader()
        # Batches yielded before the failing chunk are delivered (a broker may answer one
        # partition's fetch first); the rewind covers the failing chunk only.
        delivered: list[StagedBatch] = []
        with pytest.raises(CorruptRecordError) as info:
            read(reader, 401, into=delivered)
        assert (info.value.topic, info.value.partition, info.value.offset) == (topic, 0, before)
        assert f"{topic}[0]@{before}" in str(info.value)
        assert info.value.value == b"not avro at all" and info.value.key == b"k"
        batches = read(reader, 401 - len(records_of(delivered)), on_corrupt="collect")
        good = sorted(r["trade_id"] for r in records_of(delivered + batches))
        bad = [(c.partition, c.offset) for b in batches for c in b.corrupt]
        assert good == [1_000_000 + i for i in range(400)]
        assert bad == [(0, before)]
        for batch in delivered + batches:
            reader.commit(batch)
        assert sum(reader.committed().values()) == 401


def test_an_undecoded_read_recognises_values_and_decodes_on_demand(
    harness: Harness, catalog: SchemaCatalog
) -> None:
    """``decode=False``: values keep their bytes and schema, undecoded; reading ``record``
    decodes them to the same rows. A value that is not a single object is still found
    while reading; a body that does not match its schema is not (its reader finds it)."""
    ctx = context(catalog, partitions=1)
    resource = ctx.resources[0]
    wrong_body = resource.schema.header + b"\xff\xff"
    with harness.provider.allocate_session(ctx) as session:
        session.writer().write_batch(trades(30))
        harness.raw_append(resource.topic.name, 0, b"k", b"not avro at all")
        harness.raw_append(resource.topic.name, 0, b"k", wrong_body)
        batches = read(session.reader(), 32, on_corrupt="collect", decode=False)
    records = [r for b in batches for r in b.records]
    assert len(records) == 31 and all(r.decoded is None for r in records)
    assert all(r.schema is resource.schema for r in records)
    assert [r.record["trade_id"] for r in records[:30]] == [t["trade_id"] for t in trades(30)]
    assert records[30].value == wrong_body and records[30].body == b"\xff\xff"
    with pytest.raises(CorruptRecordError, match=r"@31 cannot be decoded"):
        _ = records[30].record
    (bad,) = [c for b in batches for c in b.corrupt]
    assert bad.value == b"not avro at all" and bad.offset == 30


def test_closed_session_refuses_work(harness: Harness, catalog: SchemaCatalog) -> None:
    """After close(), writers and the session refuse to stage."""
    session = harness.provider.allocate_session(context(catalog))
    writer = session.writer()
    session.close()
    session.close()  # idempotent
    with pytest.raises(StagingClosedError):
        writer.write_batch(trades(1))
    with pytest.raises(StagingClosedError):
        session.reader()


def test_decimal_precision_survives_staging(harness: Harness, catalog: SchemaCatalog) -> None:
    """Decimals come back exactly, to the schema's scale."""
    ctx = context(catalog, partitions=1)
    row = {**trades(1)[0], "price": Decimal("12345678901234567890.123456789012")}
    with harness.provider.allocate_session(ctx) as session:
        session.writer().write_batch([row])
        (got,) = records_of(read(session.reader(), 1))
    assert got["price"] == Decimal("12345678901234567890.123456789012")


def test_wait_keeps_the_member_and_consumes_nothing(
    harness: Harness, catalog: SchemaCatalog
) -> None:
    """reader.wait() lets time pass in the group without consuming; reading then goes on."""
    ctx = context(catalog, partitions=2)
    with harness.provider.allocate_session(ctx) as session:
        session.writer().write_batch(trades(10))
        reader = session.reader()
        first = records_of(read(reader, 10))
        session.writer().write_batch(trades(5, start=10))
        reader.wait(1.0)
        rest = records_of(read(reader, 5))
        assert reader.assignment()
    assert sorted(r["trade_id"] for r in first + rest) == [r["trade_id"] for r in trades(15)]
