"""The pure status model: lag with the high-watermark caveat, checkpoints, freshness, rendering."""

from __future__ import annotations

import json

import pytest

from durable_ingest.operations.status import (
    JSON_VERSION,
    CheckpointStatus,
    DeadLetterCounts,
    PartitionProbe,
    ResourceStatus,
    checkpoint_status,
    event_time_us,
    format_age,
    partition_status,
    render_table,
    status_json,
)
from staging.checkpoints import partition_entry, write_time_micros

NOW = write_time_micros("2026-11-22T04:00:00.000000Z")


def probe(**fields: object) -> PartitionProbe:
    values: dict[str, object] = {
        "partition": 0,
        "committed": 100,
        "low": 0,
        "high": 120,
        "last_read": 119,
        "read_to_limit": False,
    }
    values.update(fields)
    return PartitionProbe(**values)  # type: ignore[arg-type]


def test_consistent_watermark_gives_the_lag() -> None:
    """A watermark at the committed offset or above, and above every offset read, is believed."""
    status = partition_status(probe(committed=100, high=120, last_read=119))
    assert (status.watermark_ok, status.end, status.end_source, status.lag) == (
        True,
        120,
        "watermark",
        20,
    )
    assert status.lag_at_least == 20


def test_watermark_above_what_was_read_wins() -> None:
    """Records produced after the read (or not reached by it) count: the watermark is the end."""
    status = partition_status(probe(committed=100, high=150, last_read=119))
    assert (status.end, status.lag) == (150, 50)


def test_watermark_below_committed_is_impossible_and_the_read_end_is_used() -> None:
    """Tansu: high 51 while the sink committed 100 and offsets up to 109 were read."""
    status = partition_status(probe(committed=100, high=51, last_read=109))
    assert not status.watermark_ok
    assert (status.end, status.end_source, status.lag) == (110, "read", 10)


def test_watermark_below_an_offset_read_is_wrong_even_above_committed() -> None:
    """A record read at or past the high watermark proves the watermark too low."""
    status = partition_status(probe(committed=0, high=51, last_read=99))
    assert not status.watermark_ok
    assert (status.end, status.lag) == (100, 100)


def test_wrong_watermark_and_a_read_cut_at_its_limit_leave_the_lag_unknown() -> None:
    """Never a wrong number: unknown, with the lower bound the read proves."""
    status = partition_status(probe(committed=100, high=51, last_read=109, read_to_limit=True))
    assert (status.lag, status.end, status.end_source) == (None, None, None)
    assert status.lag_at_least == 10


def test_read_cut_at_its_limit_with_a_consistent_watermark_uses_it() -> None:
    """Real Kafka with a large backlog: the watermark is consistent, so it is the end."""
    status = partition_status(probe(committed=100, high=10_000, last_read=199, read_to_limit=True))
    assert (status.lag, status.end_source) == (9_900, "watermark")


def test_without_a_commit_the_lag_counts_from_the_low_watermark() -> None:
    """A group that never committed starts at the earliest offset (auto.offset.reset)."""
    status = partition_status(probe(committed=None, low=5, high=1, last_read=44))
    assert not status.watermark_ok
    assert (status.lag, status.end) == (40, 45)


def test_an_empty_partition_has_no_lag() -> None:
    """Nothing staged, nothing committed, nothing read: lag 0."""
    status = partition_status(probe(committed=None, low=0, high=0, last_read=None))
    assert (status.watermark_ok, status.lag) == (True, 0)


def test_everything_committed_on_a_consistent_broker() -> None:
    """Committed at the end: lag 0 from the watermark."""
    status = partition_status(probe(committed=120, high=120, last_read=119))
    assert (status.lag, status.end_source) == (0, "watermark")


@pytest.mark.parametrize(
    ("high", "last_read", "to_limit", "ok"),
    [(120, 119, False, True), (119, 119, False, False), (99, None, False, False)],
)
def test_watermark_consistency(high: int, last_read: int | None, to_limit: bool, ok: bool) -> None:
    """The watermark must be above the last offset read and at least the committed offset."""
    status = partition_status(
        probe(committed=100, high=high, last_read=last_read, read_to_limit=to_limit)
    )
    assert status.watermark_ok is ok


def resource(*probes: PartitionProbe, **fields: object) -> ResourceStatus:
    values: dict[str, object] = {
        "source": "coinbase",
        "resource": "matches",
        "topic": "ingest.coinbase.matches",
        "group": "ingest.sink.coinbase",
        "exists": True,
        "partitions": tuple(partition_status(p) for p in probes),
    }
    values.update(fields)
    return ResourceStatus(**values)  # type: ignore[arg-type]


def test_resource_lag_is_unknown_when_any_partition_is() -> None:
    """The total is a sum only when every part is known."""
    known = probe(partition=0, committed=10, high=12, last_read=11)
    unknown = probe(partition=1, committed=100, high=51, last_read=109, read_to_limit=True)
    assert resource(known).lag == 2
    both = resource(known, unknown)
    assert both.lag is None
    assert both.lag_at_least == 12
    assert not both.watermarks_ok


def test_checkpoint_status_is_the_resume_point_and_its_write_time() -> None:
    """The checkpoint every partition confirms, with the staging time of its write."""
    older = partition_entry({"n": 1}, "2026-11-22T03:00:00.000000Z", (0, 1), seq=1)
    newer = partition_entry({"n": 2}, "2026-11-22T03:30:00.000000Z", (0, 1), seq=2)
    status = checkpoint_status({0: newer, 1: newer})
    assert status.resume_from == {"n": 2}
    assert status.written_at_us == write_time_micros("2026-11-22T03:30:00.000000Z")
    assert status.partitions_saved == (0, 1)
    # Partition 1 has not confirmed the newer write: the source resumes from the older one.
    half = checkpoint_status({0: newer, 1: older})
    assert half.resume_from == {"n": 1}
    assert half.written_at_us == write_time_micros("2026-11-22T03:00:00.000000Z")
    assert checkpoint_status({}) == CheckpointStatus(None, None, ())


def test_freshness_is_the_newest_written_event_time() -> None:
    """Freshness: now minus the newest event time among the last committed records."""
    t1 = event_time_us("2026-11-22T03:59:00.000000Z")
    t2 = event_time_us("2026-11-22T03:59:30.000000Z")
    status = resource(
        probe(partition=0, last_written_event_us=t1),
        probe(partition=1, last_written_event_us=t2),
        probe(partition=2, committed=None, last_written_event_us=None),
    )
    assert status.newest_written_event_us == t2
    doc = status_json([status], NOW)["resources"][0]
    assert doc["freshness"] == {
        "last_written_event_time": "2026-11-22T03:59:30.000000Z",
        "age_s": 30.0,
    }
    assert [p["freshness_s"] for p in doc["partitions"]] == [60.0, 30.0, None]
    assert event_time_us(None) is None
    assert event_time_us("yesterday") is None


def test_json_document_structure() -> None:
    """Every documented field, with its type; version 1."""
    status = resource(
        probe(partition=0, committed=100, high=51, last_read=109),
        checkpoint=CheckpointStatus({"n": 2}, NOW - 5_000_000, (0,)),
        dead_letters=DeadLetterCounts("ingest.coinbase.matches.dlq", 3, 1, "refused", "t"),
    )
    doc = status_json([status], NOW)
    assert doc["version"] == JSON_VERSION == 1
    assert doc["generated_at"] == "2026-11-22T04:00:00.000000Z"
    (entry,) = doc["resources"]
    assert list(entry) == [
        "source",
        "resource",
        "topic",
        "group",
        "exists",
        "lag",
        "lag_at_least",
        "watermarks_ok",
        "freshness",
        "checkpoint",
        "dead_letters",
        "partitions",
    ]
    assert entry["lag"] == 10
    assert entry["watermarks_ok"] is False
    assert entry["checkpoint"] == {
        "resume_from": {"n": 2},
        "written_at": "2026-11-22T03:59:55.000000Z",
        "partitions_saved": [0],
    }
    assert entry["dead_letters"] == {
        "topic": "ingest.coinbase.matches.dlq",
        "total": 3,
        "open": 1,
        "newest_reason": "refused",
        "newest_time": "t",
    }
    assert entry["partitions"][0] == {
        "partition": 0,
        "committed": 100,
        "low": 0,
        "high": 51,
        "watermark_ok": False,
        "end": 110,
        "end_source": "read",
        "lag": 10,
        "lag_at_least": 10,
        "last_written_event_time": None,
        "freshness_s": None,
    }
    json.dumps(doc)  # plain JSON


def test_missing_topic_in_json_and_table() -> None:
    """A topic not created yet: exists false, lag null, and the table says so."""
    status = resource(exists=False, partitions=())
    assert status_json([status], NOW)["resources"][0]["lag"] is None
    assert "does not exist yet" in render_table([status], NOW)


def test_table_marks_read_lag_and_unknown_lag() -> None:
    """The table never shows a watermark lag it disproved: '*' for a read end, 'unknown'."""
    read = resource(probe(partition=0, committed=100, high=51, last_read=109))
    text = render_table([read], NOW)
    assert "lag        10*" in text
    assert "51 (wrong)" in text
    assert "* lag counted by reading the partition" in text
    unknown = resource(
        probe(partition=0, committed=100, high=51, last_read=109, read_to_limit=True)
    )
    text = render_table([unknown], NOW)
    assert "unknown (>= 10)" in text
    assert "--scan-limit" in text
    fine = render_table([resource(probe())], NOW)
    assert "lag        20 " in fine
    assert "*" not in fine and "unknown" not in fine


def test_table_shows_checkpoint_freshness_and_dead_letters() -> None:
    """One block per resource: lag, freshness, checkpoint, dead letters, partitions."""
    status = resource(
        probe(last_written_event_us=NOW - 150_000_000),
        checkpoint=CheckpointStatus({"products": {"BTC-USD": 7}}, NOW, (0, 1, 2)),
        dead_letters=DeadLetterCounts("t.dlq", 2, 1, "inserting 1 rows: refused", "2026-x"),
    )
    text = render_table([status], NOW)
    assert "freshness  2.5m" in text
    assert 'checkpoint {"products":{"BTC-USD":7}}' in text
    assert "dead letters 2 (1 open)  newest 2026-x: inserting 1 rows: refused" in text
    assert "PARTITION" in text and "COMMITTED" in text
    no_checkpoint = render_table([resource(probe())], NOW)
    assert "checkpoint none" in no_checkpoint
    assert "dead letters: no topic" in no_checkpoint
    assert render_table([], NOW).startswith("no sources are configured")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (3.25, "3.2s"), (600, "10.0m"), (7200, "2.0h"), (3 * 86400, "3.0d")],
)
def test_format_age(seconds: float | None, text: str) -> None:
    """Ages read in the unit that fits."""
    assert format_age(seconds) == text
