"""ingest dev's progress lines, from the workers' real metric and health formats."""

from __future__ import annotations

from durable_ingest.progress import (
    Quiet,
    Snapshot,
    describe_checkpoint,
    duration,
    maximum,
    parse_metrics,
    render,
)
from durable_ingest.render import text_table, tsv
from foundation.metrics import Metrics


def source_metrics(staged: float, dead: float = 0) -> str:
    metrics = Metrics()
    for resource, share in (("matches", 0.75), ("other", 0.25)):
        labels = {"source": "coinbase", "resource": resource}
        metrics.inc("source_records_staged_total", staged * share, labels)
        metrics.inc("source_dead_letters_total", dead * share, labels)
    metrics.set("source_connected", 1, {"source": "coinbase"})
    return metrics.render()


def sink_metrics(written: float, fresh: tuple[float, ...] = ()) -> str:
    metrics = Metrics()
    metrics.inc("sink_rows_written_total", written, {"topic": "t", "partition": "0"})
    for i, value in enumerate(fresh):
        metrics.set("sink_freshness_seconds", value, {"topic": "t", "partition": str(i)})
    return metrics.render()


def test_families_are_summed_over_labels() -> None:
    totals = parse_metrics(source_metrics(1000, dead=4))
    assert totals["ingest_source_records_staged_total"] == 1000
    assert totals["ingest_source_dead_letters_total"] == 4
    assert maximum(sink_metrics(5, (0.5, 2.5, 1.0)), "ingest_sink_freshness_seconds") == 2.5
    assert maximum("", "ingest_sink_freshness_seconds") is None


def test_a_line_shows_counts_rates_lag_and_the_checkpoint() -> None:
    health = {"last_checkpoints": {"matches": {"products": {"BTC-USD": {"trade_id": 7}}}}}
    before = Snapshot.of(2.0, source_metrics(100), sink_metrics(50), None)
    now = Snapshot.of(4.0, source_metrics(900), sink_metrics(450, (0.4,)), health)
    line = render(now, before)
    assert line.startswith("00:04  staged 900 (400/s)  written 450 (200/s)  lag 450")
    assert "fresh 0.4 s" in line and "dead 0" in line
    assert "checkpoint BTC-USD.trade_id=7" in line
    assert "not connected" not in line
    waiting = render(Snapshot.of(1.0, None, None, None), None)
    assert "staged 0" in waiting and "checkpoint none yet" in waiting
    assert "(source not connected)" in waiting


def test_checkpoints_are_flattened_and_cut() -> None:
    assert describe_checkpoint({}) == "none yet"
    two = {"a": {"x": 1}, "b": {"y": [1, 2]}}
    assert describe_checkpoint(two) == "a: x=1; b: y=[1, 2]"
    long = describe_checkpoint({"r": {f"k{i}": i for i in range(40)}}, width=30)
    assert len(long) == 30 and long.endswith("…")


def test_durations_read_well() -> None:
    assert [duration(s) for s in (0.44, 300, 36_900, 400_000)] == [
        "0.4 s",
        "5 min",
        "10.2 h",
        "4.6 d",
    ]


def test_tables_align_and_tsv_escapes() -> None:
    table = text_table(["n", "name"], [[1, "a\nb"], [None, "long value"]])
    assert table.splitlines() == [
        "n     name",
        "----  ----------",
        "1     a\\nb",
        "NULL  long value",
    ]
    assert tsv(["a", "b"], [["x\ty", None]]) == "a\tb\nx\\ty\tNULL"


def test_quiet_counts_from_the_first_connection_not_from_the_start() -> None:
    """A source still starting is not a feed gone quiet (--idle-exit); once it connected,
    quiet is the time since the counts last changed, connected or not."""
    quiet = Quiet()
    assert quiet.observe(Snapshot(1.0)) == 0.0
    assert quiet.observe(Snapshot(9.0)) == 0.0  # 9 s without a connection
    assert quiet.observe(Snapshot(10.0, connected=True)) == 0.0
    assert quiet.observe(Snapshot(12.5, connected=True)) == 2.5
    assert quiet.observe(Snapshot(13.0, staged=5, connected=True)) == 0.0
    assert quiet.observe(Snapshot(14.0, staged=5, written=5, connected=True)) == 0.0
    assert quiet.observe(Snapshot(17.0, staged=5, written=5)) == 3.0  # disconnected since


def test_quiet_starts_with_records_seen_even_if_no_poll_saw_the_connection() -> None:
    quiet = Quiet()
    assert quiet.observe(Snapshot(2.0, staged=3)) == 0.0
    assert quiet.observe(Snapshot(6.0, staged=3, written=3)) == 0.0
    assert quiet.observe(Snapshot(8.0, staged=3, written=3)) == 2.0


def test_unchanged_counts_from_the_start_whether_or_not_the_source_connected() -> None:
    """What a played capture waits on before the run ends (nothing new for a while)."""
    quiet = Quiet()
    quiet.observe(Snapshot(4.0))
    assert quiet.unchanged_for(Snapshot(4.0)) == 4.0
    quiet.observe(Snapshot(5.0, staged=2))
    assert quiet.unchanged_for(Snapshot(7.5, staged=2)) == 2.5
