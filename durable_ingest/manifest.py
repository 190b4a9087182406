"""The component manifest: every connector's contract, built from the code.

:func:`build` gathers the connectors, their resources, Avro schemas, staging
topics, sink tables, checkpoint shapes and settings, and the Protocols and
extension points new code plugs into, as one JSON-ready dict; :func:`render`
gives the stable text checked in as ``docs/manifest.json`` (its JSON Schema:
``docs/manifest.schema.json``; see docs/manifest.md).

Pure: no writes, no network, no environment, no ``ingest.toml`` (names are those of a source
named after its connector, with the built-in defaults), no timestamps or absolute paths: the
same code gives the same text anywhere.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
import inspect
import itertools
import json
import re
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, SecretBytes, SecretStr
from pydantic_core import to_jsonable_python

from foundation import config_load, errors
from foundation.config import ClickHouseSettings, ResourceSettings, settings_from
from sink_workers.run import table_name
from sink_workers.tables import table_spec
from source_workers import authoring, connectors
from source_workers.connectors.defaults import with_connector_defaults
from source_workers.context import SessionHttp, SourceContext
from staging.compose import staged_resources
from staging.protocol import StagingContext
from staging.resource import CHECKPOINT_TOPIC, dead_letter_topic, default_topic
from staging.schemas import SchemaCatalog, StagedSchema

MANIFEST_VERSION = 1
DEFAULT_PATH = "docs/manifest.json"
REGENERATE = f"ingest manifest --out {DEFAULT_PATH}"
_PACKAGES = ("foundation", "durable_ingest", "staging", "source_workers", "sink_workers", "schemas")
_QUALIFIED = re.compile(r"\b(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*)")
_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")
_CONSTRAINTS = ("gt", "ge", "lt", "le", "min_length", "max_length", "multiple_of")

# Boundary Protocols: each line names one and the classes that implement it.
_PROTOCOLS = """
staging.protocol:StagingProvider staging.kafka:KafkaStagingProvider staging.memory:MemoryStagingProvider
staging.protocol:StagingSession staging.kafka:KafkaStagingSession staging.memory:MemoryStagingSession
staging.protocol:RecordWriter staging.kafka.writer:KafkaRecordWriter staging.memory.provider:MemoryRecordWriter
staging.protocol:RecordReader staging.kafka.reader:KafkaRecordReader staging.memory.provider:MemoryRecordReader
staging.checkpoints:CheckpointStore staging.kafka:KafkaCheckpointStore staging.memory:InMemoryCheckpointStore
sink_workers.targets:Target sink_workers.targets:TableTarget sink_workers.targets:AvroTableTarget sink_workers.stream:StreamTarget
"""
_CONTEXT_METHODS = ("checkpoint", "connect", "emit_raw", "sleep", "spawn", "stopping")
_CONTEXT_ATTRIBUTES = {
    "settings": "The connector's settings: the settings model of its ConnectorSpec, read from <env_prefix>_* variables.",
    "source": "The configured source name (a connector may run as several sources).",
    "log": "A logger named source_workers.<source>.",
    "metrics": "The worker's Metrics (foundation.metrics), served on the admin port.",
}
_DOCS = "architecture configuration delivery-guarantees dev errors manifest offsets-and-checkpoints sink sources type-mapping wire-format"
# The folder contract, as the connectors package's docstring lists it.
_BULLET = re.compile(r"^\* ``([^`]+)``: (.+?)(?=^\* |\Z)", re.MULTILINE | re.DOTALL)


def build() -> dict[str, Any]:
    """The manifest of the code as imported: plain JSON values only."""
    catalog = SchemaCatalog.default()
    return {
        "$schema": "manifest.schema.json",
        "manifest_version": MANIFEST_VERSION,
        "regenerate": REGENERATE,
        "architecture": _architecture(),
        "extension_points": _extension_points(),
        "components": _components(),
        "connectors": {name: _connector(name, catalog) for name in connectors.CONNECTORS},
    }


def render(manifest: dict[str, Any]) -> str:
    """The manifest as the stable text that is checked in (sorted keys, final newline)."""
    return json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _architecture() -> dict[str, Any]:
    return {
        "summary": "Source workers connect to provider APIs and stage typed Avro records in "
        "Kafka, one topic per resource; sink workers write them to ClickHouse, one table per "
        "resource (or re-stage them to another topic), commit the offsets a batch carries only "
        "after the write, and save the checkpoints sources resume from.",
        "flow": "provider API (websocket or HTTP) -> source worker (ingest source run <source>) "
        "-> Kafka staging topic per resource -> sink worker (ingest sink run --source <source>) "
        "-> ClickHouse table per resource (or a Kafka topic, for a kafka:<topic> target)",
        "naming": {
            "staging_topic": default_topic("<source>", "<resource>"),
            "dead_letter_topic": dead_letter_topic(default_topic("<source>", "<resource>")),
            "table": table_name("<source>", "<resource>"),
            "consumer_group": "ingest.sink.<source>",
            "checkpoint_topic": CHECKPOINT_TOPIC,
            "settings_env": "INGEST_<SECTION>_<FIELD>",
            "connector_env": "<ENV_PREFIX>_<FIELD or its alias, upper case>",
            "source_name": "Names below are those of a source named after its connector; "
            '[sources.<name>] connector = "<connector>" runs it as <name> instead.',
        },
        "packages": {name: _summary(importlib.import_module(name)) for name in _PACKAGES},
        "connector_files": {
            file: _one_line(text).rstrip(";.")
            for file, text in _BULLET.findall(connectors.__doc__ or "")
        },
        "docs": {name.replace("-", "_"): f"docs/{name}.md" for name in _DOCS.split()},
    }


def _extension_points() -> dict[str, Any]:
    output = {f.name: _type_text(f.type) for f in dataclasses.fields(authoring.Output)}
    return {
        "resource.parse": {
            "declared_with": "source_workers.authoring:define_resource(parse=...)",
            "signature": "parse(raw: Any) -> Any | None",
            "description": "Is this message mine? Return the payload to process, or None. "
            "`raw` is a decoded frame or an authoring.Internal a connector emitted itself.",
        },
        "resource.process": {
            "declared_with": "source_workers.authoring:define_resource(process=...)",
            "signature": "process(payload: Any, received_at_us: int) "
            "-> None | Sequence[Record] | Output",
            "output": {"class": _ref(authoring.Output), "fields": output},
            "description": "Return None (drop), records, or Output(records, checkpoint). An "
            "exception dead-letters the raw message; a wrong shape is a SourceDefinitionError.",
        },
        "source.start": {
            "declared_with": "source_workers.authoring:define_source(start=...)",
            "signature": "async start(ctx: SourceContext) -> None",
            "description": "One session: connect, subscribe, hand every raw message to "
            "ctx.emit_raw; never writes anywhere. Returning or raising ends the session.",
            "context": {
                "class": _ref(SourceContext),
                "methods": {n: _member(SourceContext, n) for n in _CONTEXT_METHODS},
                "attributes": {
                    **_CONTEXT_ATTRIBUTES,
                    "http": f"{_ref(SessionHttp)}: "
                    + "; ".join(m["signature"] for m in _methods(SessionHttp).values()),
                },
            },
        },
        "source.control": {
            "declared_with": "source_workers.authoring:define_source(control=...)",
            "signature": "control(message: Any) -> bool",
            "description": "Sees every decoded message first; True when it consumed it. Raise "
            "ProviderRefusedError to stop, ConnectionLostError to reconnect.",
        },
    }


def _components() -> dict[str, Any]:
    protocols = {}
    for path, *implementations in (line.split() for line in _PROTOCOLS.strip().splitlines()):
        module, name = path.split(":")
        cls = _load(path)
        protocols[name] = {
            "class": _ref(cls),
            "description": _summary(cls, inherited=False)
            or _summary(importlib.import_module(module)),
            "methods": _methods(cls),
            "implementations": [_ref(_load(i)) for i in implementations],
        }
    categories = {
        cls.__name__: _summary(cls)
        for cls in vars(errors).values()
        if isinstance(cls, type) and cls.__bases__ == (errors.IngestError,)
    }
    return {
        "protocols": protocols,
        "errors": {"module": "foundation.errors", "categories": categories},
    }


def _load(path: str) -> Any:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def _connector(name: str, catalog: SchemaCatalog) -> dict[str, Any]:
    connector = connectors.load_connector(name)
    spec = connector.spec
    source = connector.build(name)
    settings = with_connector_defaults(settings_from({}), name)
    declared = settings.sources[name].resources
    staged = {r.name: r for r in staged_resources(settings, catalog, name)}
    group = StagingContext(source=name, resources=tuple(staged.values())).consumer_group
    package = f"source_workers.connectors.{name}"
    replay = spec.replay
    resources = {}
    for resource in source.resources:
        schema = staged[resource.name].schema
        resources[resource.name] = {
            "summary": _summary(importlib.import_module(f"{package}.resources.{resource.name}")),
            "parse": _ref(resource.parse),
            "process": _ref(resource.process),
            "key": list(staged[resource.name].key),
            "id_fields": list(staged[resource.name].id_fields),
            "time_field": staged[resource.name].time_field,
            "schema": _schema(schema),
            "staging": {
                "topic": staged[resource.name].topic.name,
                "dead_letter_topic": staged[resource.name].dlq.name,
                "partitions": staged[resource.name].topic.partitions,
                "retention_ms": staged[resource.name].topic.retention_ms,
                "consumer_group": group,
            },
            "target": _target(name, resource.name, declared[resource.name], schema),
            "checkpoint": dict(spec.checkpoint[resource.name]),
        }
    return {
        "package": package,
        "summary": _summary(importlib.import_module(f"{package}.source")),
        "kind": spec.kind,
        "worker": f"python -m {package}.workflow",
        "run": f"ingest source run {name}",
        "dev": f"ingest dev {name}",
        "source": {
            "start": _ref(source.start),
            "control": _ref(source.control) if source.control is not None else None,
            "dead_letters": source.dead_letters,
        },
        "settings": _settings(connector.spec.settings, connector.spec.env_prefix),
        "resources": resources,
        "replay": _replay(name, replay) if replay is not None else None,
    }


def _schema(schema: StagedSchema) -> dict[str, Any]:
    written = json.loads(schema.full_form)
    return {
        "file": schema.path,
        "record": schema.name,
        "fingerprint": schema.fingerprint_hex,
        "doc": written.get("doc"),
        "fields": [
            {
                "name": f["name"],
                "type": f["type"],
                "required": f["name"] in schema.required_fields,
                **({"doc": f["doc"]} if "doc" in f else {}),
            }
            for f in written["fields"]
        ],
    }


def _target(
    source: str, resource: str, declared: ResourceSettings, schema: StagedSchema
) -> dict[str, Any]:
    stream = declared.stream_topic
    if stream is not None:
        return {"kind": "kafka", "topic": stream}
    spec = table_spec(
        schema.parsed["fields"],
        database=ClickHouseSettings.model_fields["database"].default,
        table=table_name(source, resource),
        order_by=declared.id_fields,
    )
    engine = re.search(r"ENGINE = (\w+)", spec.create_sql())
    return {
        "kind": "clickhouse",
        "table": spec.table,
        "engine": engine.group(1) if engine else None,
        "order_by": list(spec.order_by),
        "columns": [{"name": c.name, "type": c.type} for c in spec.columns],
    }


def _settings(model: type[BaseModel], prefix: str) -> dict[str, Any]:
    docs = _attribute_docs(model)
    fields = {}
    variables = config_load.connector_variables(model, prefix)  # in the fields' order
    for variable, (name, info) in zip(variables, model.model_fields.items(), strict=True):
        entry: dict[str, Any] = {
            "env": variable,
            "type": _type_text(info.annotation),
            "required": info.is_required(),
            "secret": _is_secret(info.annotation),
        }
        if not entry["required"] and not entry["secret"]:
            entry["default"] = to_jsonable_python(info.get_default(call_default_factory=True))
        constraints = {
            attr: getattr(m, attr)
            for m in info.metadata
            for attr in _CONSTRAINTS
            if getattr(m, attr, None) is not None
        }
        if constraints:
            entry["constraints"] = constraints
        description = info.description or docs.get(name)
        if description:
            entry["description"] = description
        fields[name] = entry
    return {"model": _ref(model), "env_prefix": prefix, "fields": fields}


def _replay(name: str, spec: Any) -> dict[str, Any]:
    sample = f"source_workers/connectors/{name}/captures/sample.jsonl"
    shipped = (Path(connectors.__file__).parent / name / "captures" / "sample.jsonl").is_file()
    return {
        "websocket_env": spec.websocket_env,
        "http_env": list(spec.http_env),
        "keep": list(spec.keep),
        "sample": sample if shipped else None,
        "command": f"ingest dev {name} --replay",
    }


def _is_secret(annotation: Any) -> bool:
    secret = annotation in (SecretStr, SecretBytes)
    return secret or any(_is_secret(arg) for arg in get_args(annotation))


def _ref(obj: Any) -> str:
    """``module:qualname`` of a function, class, method, partial or callable instance."""
    if isinstance(obj, functools.partial):
        obj = obj.func
    if inspect.ismethod(obj):
        obj = obj.__func__
    if not (inspect.isfunction(obj) or inspect.isclass(obj)):
        obj = type(obj).__call__
    return f"{obj.__module__}:{obj.__qualname__}"


def _summary(obj: Any, *, inherited: bool = True) -> str:
    """The first paragraph of a docstring, on one line (RST double backticks made single)."""
    doc = inspect.getdoc(obj) if inherited else obj.__dict__.get("__doc__")
    return _one_line(doc or "")


def _one_line(text: str) -> str:
    first = " ".join(inspect.cleandoc(text).split("\n\n")[0].split())
    return _ROLE.sub(r"`\1`", first).replace("``", "`")


def _type_text(annotation: Any) -> str:
    """A type as a short string: ``str | None``, ``tuple[str, ...]``, ``SecretStr | None``."""
    if isinstance(annotation, str):
        text = annotation
    elif isinstance(annotation, type) and not get_args(annotation):
        text = annotation.__name__
    else:
        text = repr(annotation)
    return _QUALIFIED.sub(r"\1", text)


class _Shown(str):
    """An annotation that prints as its text (no quotes) in :class:`inspect.Signature`."""

    __repr__ = str.__str__


def _signature(name: str, function: Callable[..., Any]) -> str:
    def shown(annotation: Any) -> Any:
        empty = annotation is inspect.Parameter.empty
        return annotation if empty else _Shown(_type_text(annotation))

    signature = inspect.signature(function)
    parameters = [
        p.replace(annotation=shown(p.annotation))
        for p in signature.parameters.values()
        if p.name not in ("self", "cls")
    ]
    text = signature.replace(
        parameters=parameters, return_annotation=shown(signature.return_annotation)
    )
    return f"{'async ' if inspect.iscoroutinefunction(function) else ''}{name}{text}"


def _member(cls: type, name: str) -> dict[str, str]:
    member = inspect.getattr_static(cls, name)
    if isinstance(member, property) and member.fget is not None:
        returns = inspect.signature(member.fget).return_annotation
        signature = f"{name}: {_type_text(returns)} (property)"
        function: Any = member.fget
    else:
        signature, function = _signature(name, member), member
    summary = _summary(function)
    return {"signature": signature, **({"summary": summary} if summary else {})}


def _methods(cls: type) -> dict[str, dict[str, str]]:
    """The public methods and properties ``cls`` itself defines."""
    return {
        name: _member(cls, name)
        for name, member in vars(cls).items()
        if not name.startswith("_") and (inspect.isfunction(member) or isinstance(member, property))
    }


def _attribute_docs(cls: type) -> dict[str, str]:
    """Docstrings written under the annotated fields of ``cls`` and its project bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__.split(".")[0] not in _PACKAGES:
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body if isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in itertools.pairwise(body):
            if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
                continue
            doc = after.value if isinstance(after, ast.Expr) else None
            if isinstance(doc, ast.Constant) and isinstance(doc.value, str):
                docs[node.target.id] = _one_line(doc.value)
    return docs
