"""Where a source resumes: the newest checkpoint whose whole write is in the warehouse."""

from __future__ import annotations

from staging.checkpoints import partition_entry, resume_point

T1, T2, T3 = (
    "2026-11-22T03:00:01.000000Z",
    "2026-11-22T03:00:02.000000Z",
    "2026-11-22T03:00:03.000000Z",
)


def test_nothing_saved_means_no_resume_point() -> None:
    """Without entries a source starts from its own default."""
    assert resume_point({}) is None


def test_a_write_is_complete_when_every_touched_partition_has_caught_up() -> None:
    """The newest write whose partitions all have an entry at least as new wins."""
    entries = {
        0: partition_entry({"id": 2}, T2, (0, 1)),
        1: partition_entry({"id": 1}, T1, (1, 2)),
        2: partition_entry({"id": 1}, T1, (1, 2)),
    }
    # Write 2 touched partitions 0 and 1, but partition 1 has only written write 1.
    assert resume_point(entries) == {"id": 1}
    entries[1] = partition_entry({"id": 2}, T2, (0, 1))
    assert resume_point(entries) == {"id": 2}


def test_a_partition_with_no_entry_holds_back_writes_that_touched_it() -> None:
    """A write that touched a partition no sink has reported on is not complete."""
    entries = {0: partition_entry({"id": 3}, T3, (0, 2))}
    assert resume_point(entries) is None


def test_untouched_partitions_do_not_hold_anything_back() -> None:
    """Partitions a write never touched (no keys there) do not matter for it."""
    entries = {1: partition_entry({"id": 3}, T3, (1,)), 0: partition_entry({"id": 1}, T1, (0,))}
    assert resume_point(entries) == {"id": 3}


def entry(
    checkpoint: int, seq: int, touched: tuple[int, ...], prev: dict[int, int]
) -> dict[str, object]:
    return partition_entry({"id": checkpoint}, T1, touched, seq=seq, prev=prev)


def test_an_earlier_write_in_another_partition_holds_a_later_one_back() -> None:
    """W1 touched 0 and 2, W2 only 0: W2 is not a resume point until W1 is written in 2."""
    w1 = entry(1, 10, (0, 2), {})
    w2 = entry(2, 11, (0,), {2: 10})
    older = entry(0, 5, (2,), {})
    assert resume_point({0: w2, 2: older}) == {"id": 0}  # W1 is not in partition 2 yet
    assert resume_point({0: w2, 2: w1}) == {"id": 2}


def test_sequences_survive_a_wall_clock_step_back() -> None:
    """Sequences order writes even if their wall-clock write times went backwards."""
    w1 = partition_entry({"id": 1}, T3, (0,), seq=100, prev={})
    w2 = partition_entry({"id": 2}, T1, (0, 1), seq=101, prev={})
    assert resume_point({0: w2, 1: w2}) == {"id": 2}
    assert resume_point({0: w1, 1: w2}) == {"id": 1}


def test_the_encoder_stamps_sequence_and_earlier_writes() -> None:
    """Carriers hold the write's sequence and, per untouched partition, the last earlier write."""
    from staging.decoder import FixedHeaders, StagedRecord
    from staging.envelope import EnvelopeEncoder
    from staging.resource import StagedResource
    from staging.schemas import SchemaCatalog
    from tests.helpers import trade

    catalog = SchemaCatalog.default()
    resource = StagedResource.define(
        source="s",
        name="r",
        schema=catalog.load("coinbase/matches.avsc"),
        key=("product_id",),
        id_fields=("product_id", "trade_id"),
        partitions=8,
    )
    encoder = EnvelopeEncoder(resource, max_record_bytes=1_000_000)
    first = encoder.encode_batch(
        [trade(0, "BTC-USD"), trade(1, "ETH-USD")], ingest_time_us=50, checkpoint={"n": 1}
    )
    second = encoder.encode_batch([trade(2, "BTC-USD")], ingest_time_us=40, checkpoint={"n": 2})

    def carried(batch: object, index: int) -> object:
        envelope = batch[index]  # type: ignore[index]
        record = StagedRecord(
            "t",
            envelope.partition,
            0,
            envelope.key,
            None,
            envelope.value,
            FixedHeaders(tuple(envelope.headers)),
            {},
        )
        return record.carried()

    a = carried(first, 1)
    b = carried(second, 0)
    assert a.seq == 50 and b.seq == 51  # never backwards, even with the clock at 40
    btc, eth = first.partitions[0], first.partitions[1]
    assert btc != eth and b.prev == {eth: 50}


def test_entries_saved_before_sequences_still_hold_later_writes_back() -> None:
    """A pre-upgrade entry counts by its write time: it does not switch the rule off."""
    from staging.checkpoints import write_time_micros

    old = partition_entry({"id": 0}, T1, (2,))  # no seq: saved by an older sink
    w1_seq = write_time_micros(T2)
    w2 = partition_entry({"id": 2}, T3, (0,), seq=w1_seq + 1, prev={2: w1_seq})
    assert resume_point({0: w2, 2: old}) == {"id": 0}  # W1 is not in partition 2 yet


def test_a_refused_carrier_leaves_no_phantom_earlier_write() -> None:
    """When encoding fails on a carrier's size, the writer's history does not move."""
    import pytest

    from foundation.errors import RecordTooLargeError
    from staging.envelope import EnvelopeEncoder
    from staging.resource import StagedResource
    from staging.schemas import SchemaCatalog
    from tests.helpers import trade

    resource = StagedResource.define(
        source="s",
        name="r",
        schema=SchemaCatalog.default().load("coinbase/matches.avsc"),
        key=("product_id",),
        id_fields=("product_id", "trade_id"),
        partitions=8,
    )
    encoder = EnvelopeEncoder(resource, max_record_bytes=1_200)
    with pytest.raises(RecordTooLargeError):
        encoder.encode_batch([trade(0)], ingest_time_us=50, checkpoint={"pad": "x" * 900})
    batch = encoder.encode_batch([trade(1, "ETH-USD")], ingest_time_us=60, checkpoint={"n": 1})
    assert dict(batch.headers[0])["ce_checkpointprev"] == b""
