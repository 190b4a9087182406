"""The Prometheus registry: counters, gauges, summaries and the text format."""

from __future__ import annotations

import pytest

from foundation.metrics import Metrics


def test_text_exposition_of_every_kind() -> None:
    """Series render with HELP, TYPE, sorted labels, and summaries as _sum and _count."""
    metrics = Metrics()
    metrics.inc("rows_total", 5, {"resource": "matches"}, help="Rows")
    metrics.inc("rows_total", 2, {"resource": "matches"})
    metrics.set("lag", 7, {"topic": "t", "partition": "0"})
    metrics.observe("insert_seconds", 0.25, {"resource": "matches"})
    metrics.observe("insert_seconds", 0.75, {"resource": "matches"})
    text = metrics.render()
    assert "# HELP ingest_rows_total Rows\n# TYPE ingest_rows_total counter\n" in text
    assert 'ingest_rows_total{resource="matches"} 7\n' in text
    assert 'ingest_lag{partition="0",topic="t"} 7\n' in text
    assert 'ingest_insert_seconds_sum{resource="matches"} 1.000000\n' in text
    assert 'ingest_insert_seconds_count{resource="matches"} 2\n' in text
    assert metrics.value("rows_total", {"resource": "matches"}) == 7


def test_label_values_are_escaped() -> None:
    """Quotes, backslashes and newlines in label values cannot break the format."""
    metrics = Metrics()
    metrics.set("g", 1, {"l": 'a"b\\c\nd'})
    assert 'ingest_g{l="a\\"b\\\\c\\nd"} 1' in metrics.render()


def test_a_name_keeps_its_kind() -> None:
    """Using a counter's name as a gauge is a programming error, caught at once."""
    metrics = Metrics()
    metrics.inc("x")
    with pytest.raises(ValueError, match="is a counter"):
        metrics.set("x", 1)


def test_large_values_keep_full_precision() -> None:
    """Offsets and Unix times are not rounded to six significant digits."""
    metrics = Metrics()
    metrics.set("offset", 12_345_678)
    metrics.set("saved_seconds", 1_795_320_000.125)
    text = metrics.render()
    assert "ingest_offset 12345678\n" in text and "ingest_saved_seconds 1795320000.125\n" in text
