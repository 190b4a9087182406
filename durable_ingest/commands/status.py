"""``ingest status [--source S] [--json]``: where every resource stands.

Per resource: the staged topic's partitions; per partition the sink group's
committed offset, the broker's high watermark and the lag; the checkpoint the
source resumes from; the freshness of what is written; the dead letters.
Reads only: no consumer group is joined and no offset moves (the checkpoint
store bounds its read with a fence tombstone on ``ingest._checkpoints``).

The reads here are I/O only; :mod:`durable_ingest.operations.status` decides what they
mean (lag with the high-watermark caveat) and renders them. Fields:
docs/operations.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing

from durable_ingest.commands import Subcommands
from durable_ingest.operations.dlq import counts, dlq_group, load_letters, read_records
from durable_ingest.operations.status import (
    DeadLetterCounts,
    PartitionProbe,
    ResourceStatus,
    checkpoint_status,
    event_time_us,
    partition_status,
    render_table,
    status_json,
)
from foundation.config import Settings
from foundation.errors import StopError, TopicError
from source_workers.connectors.defaults import with_connector_defaults, with_staged_connectors
from staging.checkpoints import entries_in
from staging.compose import checkpoint_store, schema_catalog, staged_resources
from staging.envelope import H_TIME
from staging.kafka.admin import TopicAdmin
from staging.kafka.scan import TopicScanner
from staging.protocol import StagingContext
from staging.resource import StagedResource, check_name

DEFAULT_SCAN_LIMIT = 10_000
DEFAULT_WAIT_S = 2.0


def register(commands: Subcommands) -> None:
    status = commands.add_parser(
        "status",
        help="per resource: partitions, committed offsets, lag, checkpoint, freshness, "
        "dead letters",
    )
    status.add_argument("--source", help="only this source (a configured one or a connector)")
    status.add_argument("--json", action="store_true", help="print JSON (see docs/operations.md)")
    status.add_argument(
        "--scan-limit",
        type=int,
        default=DEFAULT_SCAN_LIMIT,
        metavar="N",
        help=f"records read per partition to find its end (default {DEFAULT_SCAN_LIMIT})",
    )
    status.add_argument(
        "--instance",
        default="",
        metavar="NAME",
        help="the resume point of this source process (ingest source run --instance NAME)",
    )
    wait_option(status)
    status.set_defaults(handler=_status, operation=True)


def wait_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait",
        type=float,
        default=DEFAULT_WAIT_S,
        metavar="SECONDS",
        help="a read ends after this long without a new record (default "
        f"{DEFAULT_WAIT_S:g}); the end of a topic is where it ended",
    )


def check_wait(args: argparse.Namespace) -> float:
    """``--wait``, checked; also keeps the scans' expected early ends out of INFO logs."""
    if not args.wait > 0:
        raise StopError(f"--wait must be more than 0 seconds, not {args.wait}")
    if getattr(args, "log_level", "INFO") != "DEBUG":
        logging.getLogger("staging.kafka.scan").setLevel(logging.WARNING)
    return float(args.wait)


def _status(args: argparse.Namespace, settings: Settings) -> int:
    if args.scan_limit < 1:
        raise StopError(f"--scan-limit must be at least 1, not {args.scan_limit}")
    wait_s = check_wait(args)
    settings = with_connector_defaults(settings, args.source)
    if args.source is None:
        # Sources run from a connector without being in the TOML count too, once they
        # staged something (ingest source run usgs).
        settings = with_staged_connectors(
            settings, set(TopicAdmin(settings.kafka).existing_topics())
        )
    resources = staged_resources(settings, schema_catalog(settings), args.source)
    if args.instance:
        check_name("instance", args.instance)
    statuses = collect(
        settings, resources, scan_limit=args.scan_limit, wait_s=wait_s, instance=args.instance
    )
    now_us = time.time_ns() // 1_000
    if args.json:
        print(json.dumps(status_json(statuses, now_us), indent=2, sort_keys=False))
    else:
        print(render_table(statuses, now_us))
    return 0


def collect(
    settings: Settings,
    resources: list[StagedResource],
    *,
    scan_limit: int,
    wait_s: float,
    instance: str = "",
) -> list[ResourceStatus]:
    """Read every resource's state (the checkpoints first: that fails fast without Kafka)."""
    if not resources:
        return []
    with closing(checkpoint_store(settings)) as store:
        saved = store.load_all()
    # The reads of each topic end by waiting: the staged and dead-letter topics of every
    # resource are read side by side, each with clients of its own.
    with ThreadPoolExecutor(min(16, 2 * len(resources)), thread_name_prefix="status") as pool:
        staged = [
            pool.submit(partition_probes, settings, r, scan_limit=scan_limit, wait_s=wait_s)
            for r in resources
        ]
        letters = [pool.submit(dead_letters, settings, r, wait_s) for r in resources]
        return [
            ResourceStatus(
                source=r.source,
                resource=r.name,
                topic=r.topic.name,
                group=sink_group(r),
                exists=probes.result() is not None,
                partitions=tuple(partition_status(p) for p in probes.result() or ()),
                checkpoint=checkpoint_status(entries_in(saved, r.source, r.name, instance)),
                dead_letters=counted.result(),
            )
            for r, probes, counted in zip(resources, staged, letters, strict=True)
        ]


def sink_group(resource: StagedResource) -> str:
    return StagingContext(source=resource.source, resources=(resource,)).consumer_group


def partition_probes(
    settings: Settings, resource: StagedResource, *, scan_limit: int, wait_s: float
) -> list[PartitionProbe] | None:
    """What was read of each partition of the staged topic (None: it does not exist)."""
    topic = resource.topic.name
    scanner = TopicScanner(settings.kafka)
    try:
        try:
            partitions = scanner.partitions(topic)
        except TopicError:
            return None
        return _probe(
            settings, scanner, topic, sink_group(resource), partitions, scan_limit, wait_s
        )
    finally:
        scanner.close()


def _probe(
    settings: Settings,
    scanner: TopicScanner,
    topic: str,
    group: str,
    partitions: list[int],
    scan_limit: int,
    wait_s: float,
) -> list[PartitionProbe]:
    """Committed offsets, the record before each, the backlog up to ``scan_limit``, and the
    watermarks asked after those reads (see :mod:`durable_ingest.operations.status`)."""
    committed = scanner.committed(group, topic)
    low = {p: lo for p, (lo, _) in scanner.watermarks(topic).items()}
    base = {p: committed.get(p, low.get(p, 0)) for p in partitions}
    start = {p: c - 1 for p, c in committed.items() if c > 0}
    stop = {p: base[p] + scan_limit for p in partitions}
    last: dict[int, int] = {}
    written: dict[int, int | None] = {}
    for record in read_records(settings, topic, start, stop, idle_s=wait_s):
        p = record.partition
        last[p] = max(last.get(p, -1), record.offset)
        if record.offset + 1 == committed.get(p):
            written[p] = event_time_us(record.header(H_TIME))
    high = {p: hi for p, (_, hi) in scanner.watermarks(topic).items()}
    to_limit = {p for p in partitions if last.get(p, -1) >= stop[p] - 1}
    # A read stopped at its limit says nothing of the end: believe the watermark only
    # if nothing can be read at it (a broker that reports it too low serves records there).
    at = {p: high[p] for p in to_limit if high.get(p, 0) > last.get(p, -1)}
    if at:
        beyond = read_records(settings, topic, at, {p: o + 1 for p, o in at.items()}, idle_s=wait_s)
        for record in beyond:
            last[record.partition] = max(last.get(record.partition, -1), record.offset)
        high = {p: hi for p, (_, hi) in scanner.watermarks(topic).items()}
    return [
        PartitionProbe(
            partition=p,
            committed=committed.get(p),
            low=low.get(p, 0),
            high=high.get(p, 0),
            last_read=last.get(p),
            read_to_limit=p in to_limit,
            last_written_event_us=written.get(p),
        )
        for p in partitions
    ]


def dead_letters(
    settings: Settings, resource: StagedResource, wait_s: float
) -> DeadLetterCounts | None:
    """Counts of the resource's dead-letter topic (None when it does not exist)."""
    topic = resource.dlq.name
    scanner = TopicScanner(settings.kafka)
    try:
        try:
            handled = scanner.committed(dlq_group(resource.source), topic)
        except TopicError:
            return None
    finally:
        scanner.close()
    return counts(topic, load_letters(settings, topic, idle_s=wait_s), handled)
