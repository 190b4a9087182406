"""The sink's metrics that are more than one call: every per-resource series declared at
start (at 0, so a dashboard finds it before the first dead letter), and the lag per
partition after a commit. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from foundation.metrics import Metrics
from staging.offsets import Partition


def declare_series(metrics: Metrics, resources: Sequence[str]) -> None:
    """The per-resource counters, at 0 from the start."""
    for resource in resources:
        labels = {"resource": resource}
        metrics.inc("sink_rows_written_total", 0, labels, help="Rows inserted")
        metrics.inc(
            "sink_dead_letters_total", 0, labels, help="Records sent to a dead-letter topic"
        )
        metrics.inc("sink_retries_total", 0, labels, help="Inserts retried after a transient error")


def publish_lag(
    metrics: Metrics,
    ends: Mapping[Partition, int],
    committed: Mapping[Partition, int],
    resource_of: Mapping[str, str],
) -> None:
    """``sink_lag_records``: records after the committed offset, per partition just
    committed, from the end the broker last reported (``RecordReader.ends``). An end below
    the committed offset is a wrong watermark (Tansu): the lag is left as it was."""
    for part, offset in committed.items():
        end = ends.get(part)
        if end is not None and end >= offset:
            metrics.set(
                "sink_lag_records",
                end - offset,
                {
                    "resource": resource_of.get(part.topic, ""),
                    "topic": part.topic,
                    "partition": str(part.partition),
                },
                help="Staged records after the committed offset (by the last fetch)",
            )
