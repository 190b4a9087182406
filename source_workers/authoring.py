"""The authoring API: how a connector declares its Source and Resources.

A **Source** is one provider connection (``define_source``). It owns its
**Resources** (``define_resource``), one per kind of record it stages. The
source's ``start(ctx)`` only connects, subscribes and hands every raw provider
message to ``ctx.emit_raw``; it never writes anywhere. Each resource then
decides, in the Durable Runtime's single processing task:

* ``parse(message)``: is this message mine? Return the payload to process, or
  ``None`` (not this resource's message).
* ``process(payload, received_at_us)``: return ``None`` (drop), a sequence of
  records, or ``Output(records, checkpoint)`` (a ``(records, checkpoint)``
  tuple is accepted too). The checkpoint says where the source would resume
  once these records, and all before them, are written; it may be a function
  returning it, called when the records are staged.

Anything else returned is a wiring mistake and raises
:class:`SourceDefinitionError` naming the source, the resource and the value.
An exception raised by ``parse`` or ``process`` means the *message* was bad:
the runtime dead-letters the raw frame and goes on.

Pure code: no I/O here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from pydantic import ValidationError

from foundation.config import ResourceSettings
from foundation.errors import SourceDefinitionError, UnknownResourceError
from staging.envelope import Checkpoint
from staging.resource import check_name

if TYPE_CHECKING:
    from source_workers.context import SourceContext

Record = Mapping[str, Any]
ParseFn = Callable[[Any], Any]
ProcessFn = Callable[[Any, int], Any]
StartFn = Callable[["SourceContext"], Awaitable[None]]
ControlFn = Callable[[Any], bool]

_DAY_MS = 24 * 3600 * 1000


class Internal(NamedTuple):
    """A message a connector's own code emits (a REST item, a backfill's end), never a
    decoded provider frame: JSON cannot produce one, so a provider cannot forge it."""

    kind: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Output:
    """What ``process`` returns when the records move the checkpoint."""

    records: Sequence[Record]
    checkpoint: Checkpoint | Callable[[], Checkpoint] | None = None
    """The checkpoint, or a function that returns it: called when the records are
    staged, so a connector whose checkpoint costs something to build (a map of
    every product) can return the same bound method for every message."""


@dataclass(frozen=True, slots=True)
class Resource:
    """One kind of record of a source: its logic, and how it is staged unless the TOML
    says otherwise.

    This is the one Resource type. Its ``staging`` is its configuration view, the very
    :class:`~foundation.config.ResourceSettings` a ``[sources.<s>.resources.<r>]``
    table gives (so it is validated where it is defined); the staging view,
    :class:`~staging.resource.StagedResource` (the schema loaded, the topics named), is
    derived from the resolved settings by :func:`staging.compose.staged_resources`.
    """

    name: str
    staging: ResourceSettings
    """Schema file, key, natural key, event-time field, topic settings and target."""
    parse: ParseFn = field(repr=False)
    process: ProcessFn = field(repr=False)


@dataclass(frozen=True, slots=True)
class Source:
    """A provider connection and the resources it feeds."""

    name: str
    resources: tuple[Resource, ...]
    start: StartFn = field(repr=False)
    dead_letters: str
    """The resource whose dead-letter topic takes frames no resource could claim
    (not JSON, too deep...)."""
    control: ControlFn | None = field(default=None, repr=False)
    """Protocol messages of the provider (acks, errors, replies): sees every decoded
    message first; returns True when it consumed it. It may raise
    :class:`ProviderRefusedError` (stop) or :class:`ConnectionLostError` (reconnect)."""

    def resource(self, name: str, value: Any = None) -> Resource:
        """The resource called ``name``; an unknown name is a wiring mistake."""
        for resource in self.resources:
            if resource.name == name:
                return resource
        known = ", ".join(r.name for r in self.resources)
        shown = f" with value {_short(value)}" if value is not None else ""
        raise UnknownResourceError(
            f"source {self.name}: an event was emitted for unknown resource {name!r}{shown} "
            f"(declared: {known})",
            source=self.name,
            resource=name,
        )


def define_resource(
    *,
    name: str,
    schema: str,
    key: Sequence[str],
    parse: ParseFn,
    process: ProcessFn,
    target: str = "clickhouse",
    id_fields: Sequence[str] = (),
    time_field: str | None = None,
    partitions: int = 3,
    retention_ms: int = 7 * _DAY_MS,
) -> Resource:
    """Declare a resource; its staging settings are the defaults the TOML may override."""
    check_name("resource", name)
    if not callable(parse) or not callable(process):
        raise SourceDefinitionError(
            f"resource {name}: parse and process must be callables", source="", resource=name
        )
    if not key:
        raise SourceDefinitionError(
            f"resource {name}: key must name at least one field", source="", resource=name
        )
    try:
        staging = ResourceSettings(
            schema_file=schema,
            key=list(key),
            id_fields=list(id_fields),
            time_field=time_field,
            partitions=partitions,
            retention_ms=retention_ms,
            target=target,
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        raise SourceDefinitionError(
            f"resource {name}: {problems}", source="", resource=name
        ) from None
    return Resource(name=name, staging=staging, parse=parse, process=process)


def define_source(
    *,
    name: str,
    resources: Sequence[Resource],
    start: StartFn,
    dead_letters: str | None = None,
    control: ControlFn | None = None,
) -> Source:
    """Declare a source that owns ``resources``; ``start`` connects and emits raw messages."""
    check_name("source", name)
    if not resources:
        raise SourceDefinitionError(f"source {name}: declare at least one resource", source=name)
    names = [r.name for r in resources]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise SourceDefinitionError(
            f"source {name}: resource {duplicated[0]!r} is declared twice", source=name
        )
    if not callable(start):
        raise SourceDefinitionError(f"source {name}: start must be an async callable", source=name)
    dead = dead_letters or resources[0].name
    if dead not in names:
        raise SourceDefinitionError(
            f"source {name}: dead_letters names unknown resource {dead!r}", source=name
        )
    return Source(
        name=name, resources=tuple(resources), start=start, dead_letters=dead, control=control
    )


def normalize(
    source: str, resource: str, value: Any
) -> tuple[Sequence[Record], Checkpoint | Callable[[], Checkpoint] | None]:
    """``process``'s result as (records, checkpoint); any other shape is refused."""
    if value is None:
        return (), None
    if isinstance(value, Output):
        records, checkpoint = value.records, value.checkpoint
    elif isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], list | tuple):
        records, checkpoint = value
    elif isinstance(value, list | tuple):
        records, checkpoint = value, None
    else:
        raise _bad_shape(source, resource, value, "expected None, a list of records or Output")
    if not isinstance(records, list | tuple):
        raise _bad_shape(source, resource, value, "records must be a list")
    for record in records:
        if not isinstance(record, Mapping):
            raise _bad_shape(source, resource, record, "each record must be a mapping")
    if checkpoint is not None and not (isinstance(checkpoint, Mapping) or callable(checkpoint)):
        raise _bad_shape(source, resource, checkpoint, "the checkpoint must be a mapping")
    return records, checkpoint


def _bad_shape(source: str, resource: str, value: Any, why: str) -> SourceDefinitionError:
    return SourceDefinitionError(
        f"source {source}, resource {resource}: process() returned {_short(value)} "
        f"({type(value).__name__}): {why}",
        source=source,
        resource=resource,
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
