"""``ingest dlq show R`` and ``ingest dlq retry R``: a resource's dead letters.

``show`` lists them (offset, time, state, code, origin, reason, a preview of
the value); ``retry`` re-drives the open ones once their cause is fixed and
says how many were re-driven, still fail, or were handled before. The
semantics are in :mod:`durable_ingest.operations.dlq`, :mod:`durable_ingest.operations.redrive` and
docs/operations.md.
``R`` is a resource name, or ``<source>.<resource>``; ``--source`` picks
the source when several have a resource of that name.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from durable_ingest.commands import Subcommands
from durable_ingest.commands.status import check_wait, wait_option
from durable_ingest.operations.dlq import Letter, dlq_group, is_open, load_letters, states
from durable_ingest.operations.redrive import FrameRedrive, Redriver, RetryReport
from foundation.config import Settings
from foundation.errors import (
    ConfigError,
    CorruptRecordError,
    StopError,
    TopicError,
    UnknownResourceError,
    UnknownSchemaError,
)
from source_workers.connectors.defaults import unconfigured_connectors, with_connector_defaults
from source_workers.frames import FrameLimits
from staging.compose import schema_catalog, staged_resources
from staging.decoder import EnvelopeDecoder, FixedHeaders
from staging.kafka.scan import TopicScanner
from staging.resource import StagedResource
from staging.schemas import SchemaCatalog


def register(commands: Subcommands) -> None:
    dlq = commands.add_parser("dlq", help="dead letters: show them, re-drive them")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True)
    show = dlq_commands.add_parser("show", help="list a resource's dead letters and why")
    _common(show)
    show.add_argument(
        "--limit", type=int, default=20, metavar="N", help="the newest N (default 20; 0: all)"
    )
    show.set_defaults(handler=_show, operation=True)
    retry = dlq_commands.add_parser(
        "retry", help="re-drive a resource's open dead letters, each once"
    )
    _common(retry)
    retry.add_argument(
        "--dry-run", action="store_true", help="say what would happen; write and commit nothing"
    )
    retry.set_defaults(handler=_retry, operation=True)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("resource", help="the resource (or <source>.<resource>)")
    parser.add_argument("--source", help="the source of the resource")
    parser.add_argument("--json", action="store_true", help="print JSON")
    wait_option(parser)


def resolve(
    settings: Settings, name: str, source: str | None
) -> tuple[Settings, StagedResource, list[StagedResource], SchemaCatalog]:
    """The resource ``name`` and every resource of its source; a one-line error otherwise."""
    if source is None and "." in name:
        source, name = name.split(".", 1)
    settings = with_connector_defaults(settings, source)
    catalog = schema_catalog(settings)
    everything = staged_resources(settings, catalog, source)
    found = [r for r in everything if r.name == name]
    if not found and source is None:
        # A connector run without being in the TOML (ingest source run usgs).
        owners = [c for c, names in unconfigured_connectors(settings).items() if name in names]
        if len(owners) == 1:
            return resolve(settings, name, owners[0])
        if owners:
            raise ConfigError(
                f"resource {name!r} exists in connectors {', '.join(owners)}: name one with "
                "--source"
            )
    if not found:
        known = ", ".join(r.qualified_name for r in everything) or "none"
        where = f"source {source} has no resource" if source else "no resource is called"
        raise UnknownResourceError(
            f"{where} {name!r} (known: {known}; a source not in the configuration: "
            "--source <source>)",
            source=source or "",
            resource=name,
        )
    if len(found) > 1:
        sources = ", ".join(r.source for r in found)
        raise ConfigError(f"resource {name!r} exists in sources {sources}: name one with --source")
    resource = found[0]
    return settings, resource, [r for r in everything if r.source == resource.source], catalog


def _committed(settings: Settings, resource: StagedResource) -> tuple[dict[int, int], int]:
    """The re-drive group's offsets on the dead-letter topic, and the staged topic's
    partition count."""
    scanner = TopicScanner(settings.kafka)
    try:
        handled = scanner.committed(dlq_group(resource.source), resource.dlq.name)
        partitions = len(scanner.partitions(resource.topic.name))
    finally:
        scanner.close()
    return handled, partitions


def _load(
    args: argparse.Namespace, settings: Settings, resource: StagedResource
) -> tuple[dict[int, int], int, list[Letter]] | None:
    """The re-drive group's offsets, the staged topic's partition count and every dead
    letter of ``resource``; None when its dead-letter topic does not exist yet."""
    wait_s = check_wait(args)
    try:
        handled, partitions = _committed(settings, resource)
        return handled, partitions, load_letters(settings, resource.dlq.name, idle_s=wait_s)
    except TopicError:
        return None


def _missing(resource: StagedResource, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"topic": resource.dlq.name, "exists": False, "letters": []}))
    else:
        print(f"{resource.dlq.name} does not exist yet: nothing was dead-lettered")
    return 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    if args.limit < 0:
        raise StopError(f"--limit must be 0 (all) or more, not {args.limit}")
    settings, resource, _, catalog = resolve(settings, args.resource, args.source)
    loaded = _load(args, settings, resource)
    if loaded is None:
        return _missing(resource, args.json)
    handled, _, letters = loaded
    catalog.load_all()
    decoder = EnvelopeDecoder(catalog)
    marks = states(letters, handled)
    open_count = sum(1 for state, _ in marks if state == "open")
    listed = list(zip(letters, marks, strict=True))
    if args.limit:
        listed = listed[-args.limit :]
    if args.json:
        print(
            json.dumps(
                {
                    "source": resource.source,
                    "resource": resource.name,
                    "topic": resource.dlq.name,
                    "group": dlq_group(resource.source),
                    "committed": {str(p): o for p, o in sorted(handled.items())},
                    "total": len(letters),
                    "open": open_count,
                    "letters": [
                        {
                            "partition": x.partition,
                            "offset": x.offset,
                            "time": x.time,
                            "state": state,
                            "requeued_as": again,
                            "attempts": x.attempts,
                            "kind": x.kind,
                            "code": x.code,
                            "origin": x.origin,
                            "reason": x.reason,
                            "preview": preview(x, decoder),
                        }
                        for x, (state, again) in listed
                    ],
                },
                indent=2,
            )
        )
        return 0
    print(
        f"{resource.dlq.name}: {len(letters)} dead letter(s), {open_count} open "
        f"(re-drive group {dlq_group(resource.source)})"
    )
    if len(listed) < len(letters):
        print(f"(the newest {len(listed)}; --limit 0 shows all)")
    for x, (state, again) in listed:
        status = f"{state} as @{again}" if again is not None else state
        print(f"@{x.offset}  {x.time or '-'}  {status}  {x.code or '-'}  from {x.origin or '?'}")
        print(f"    reason: {' '.join(x.reason.split()) or '-'}")
        print(f"    value:  {preview(x, decoder)}")
    return 0


def _retry(args: argparse.Namespace, settings: Settings) -> int:
    settings, resource, resources, catalog = resolve(settings, args.resource, args.source)
    loaded = _load(args, settings, resource)
    if loaded is None:
        return _missing(resource, args.json)
    handled, partitions, letters = loaded
    frames = None
    if any(x.kind == "source" and is_open(x, handled) for x in letters):
        frames = _frames(settings, resource.source)
    report = Redriver(
        settings, resource, resources, catalog=catalog, frames=frames, dry_run=args.dry_run
    ).run(letters, handled, partitions)
    if args.json:
        print(json.dumps(_report_json(resource, report), indent=2))
    else:
        print(_report_text(resource, report))
    return 1 if report.still_failing else 0


def _frames(settings: Settings, source: str) -> FrameRedrive | None:
    """The source's connector, to re-run frames through (None: a source without one)."""
    from source_workers.connectors import CONNECTORS
    from source_workers.run import build_source

    if settings.sources[source].connector is None and source not in CONNECTORS:
        return None
    connector, _options = build_source(settings, source)
    runtime = settings.sources[source].runtime
    return FrameRedrive(connector, FrameLimits(runtime.max_frame_bytes, runtime.max_json_depth))


def preview(letter: Letter, decoder: EnvelopeDecoder, width: int = 100) -> str:
    """A short look at the value: the frame's text, the decoded record, or hex."""
    value = letter.value
    if value is None:
        return "(no value)"
    text: str
    if letter.kind == "source":
        text = value.decode("utf-8", "replace")
    else:
        where = letter.position or (letter.topic, letter.partition, letter.offset)
        try:
            record = decoder.decode(*where, letter.key, value, FixedHeaders(letter.headers))
            text = json.dumps(record.record, separators=(",", ":"), default=str)
        except (CorruptRecordError, UnknownSchemaError):
            text = "hex " + value[:48].hex()
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _report_json(resource: StagedResource, report: RetryReport) -> dict[str, Any]:
    return {
        "source": resource.source,
        "resource": resource.name,
        "topic": resource.dlq.name,
        "dry_run": report.dry_run,
        "redriven": report.redriven,
        "records_copied": report.records_copied,
        "rows_staged": report.rows_staged,
        "still_failing": report.still_failing,
        "skipped": report.skipped,
        "failures": [{"offset": o, "reason": why} for o, why in report.failures],
    }


def _report_text(resource: StagedResource, report: RetryReport) -> str:
    verb = "would re-drive" if report.dry_run else "re-driven"
    lines = [
        f"{resource.dlq.name}: {verb} {report.redriven} ({report.records_copied} record(s) "
        f"back to {resource.topic.name}, {report.rows_staged} row(s) from source frames), "
        f"still failing {report.still_failing}, skipped {report.skipped} (handled before)"
    ]
    for offset, why in report.failures:
        lines.append(f"  still failing @{offset}: {' '.join(why.split())[:300]}")
    if report.dry_run:
        lines.append("dry run: nothing was written or committed")
    return "\n".join(lines)
