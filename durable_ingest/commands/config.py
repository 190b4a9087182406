"""``ingest config check [--json] [--source SOURCE]``: validate the configuration, show it.

Prints the effective configuration (defaults, then the TOML file, then the
``INGEST_*`` variables, with the connector's resources filled in for each
source that runs one), says where it came from, and checks more than the
settings model does, without contacting Kafka, ClickHouse or a provider:

* every source's connector exists, and its connector settings
  (``<PREFIX>_*`` variables, e.g. ``COINBASE_PRODUCTS``) validate;
* no source declares a resource its connector does not define (a typo);
* every resource's schema file loads, and so does every ``.avsc`` in the
  schemas folder (a sink loads them all);
* resource names, keys and sink targets are consistent (table names unique,
  no stream into a staging topic);
* the TLS files the settings name exist on this machine.

Secrets never appear: SecretStr fields print as ``**********``, and so do the
user-info and secret-looking query parameters of any URL. Any problem is one
:class:`~foundation.errors.StopError`, which ``ingest`` prints as one line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from durable_ingest.commands import Subcommands
from foundation.config import DEFAULT_CONFIG_FILE, ENV_CONFIG_FILE, ENV_PREFIX, Settings
from foundation.config_load import connector_settings, connector_variables
from foundation.errors import ConfigError, SchemaError
from source_workers.connectors.defaults import with_connector_defaults
from staging.compose import schema_catalog, staged_resources

MASK = "**********"
_SECRET_PARAMETER = re.compile(r"pass|secret|token|key|auth|sig|cred", re.IGNORECASE)
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")
# TLS files the workers open, by section: (field, a directory is allowed too).
_KAFKA_FILES = (
    ("ssl_ca_location", True),
    ("ssl_certificate_location", False),
    ("ssl_key_location", False),
)
_CLICKHOUSE_FILES = (("ca_cert", True), ("client_cert", False), ("client_key", False))


def register(commands: Subcommands) -> None:
    config = commands.add_parser("config", help="inspect the configuration")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser(
        "check",
        help="validate the configuration and print it, secrets masked (exit 2 on a problem)",
    )
    check.add_argument("--json", action="store_true", help="print JSON instead of TOML text")
    check.add_argument(
        "--source",
        help="check connector settings for this source only (a configured source or a "
        "connector name, as for `ingest source run`); default: every configured source",
    )
    check.set_defaults(handler=_check)


@dataclass(frozen=True, slots=True)
class ConnectorReport:
    """One source's connector and its (masked) connector settings."""

    source: str
    connector: str
    env_prefix: str
    settings: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CheckReport:
    """What ``config check`` found: the effective settings and where they came from."""

    settings: Settings
    config_file: Path | None
    environment: tuple[str, ...]
    connectors: tuple[ConnectorReport, ...]

    @property
    def resource_count(self) -> int:
        return sum(len(s.resources) for s in self.settings.sources.values())

    def summary(self) -> str:
        sources, resources = len(self.settings.sources), self.resource_count
        return (
            f"configuration OK: {sources} source{'' if sources == 1 else 's'}, "
            f"{resources} resource{'' if resources == 1 else 's'}"
        )


def _check(args: argparse.Namespace, settings: Settings) -> int:
    report = check_configuration(settings, config_file=args.config, source=args.source)
    if args.json:
        print(json.dumps(report_json(report), indent=2))
    else:
        print(report_text(report))
        print(report.summary())
    return 0


# --- the checks ------------------------------------------------------------


def config_file_of(path: Path | None, env: Mapping[str, str]) -> Path | None:
    """The file ``load_settings`` read: ``--config``, ``$INGEST_CONFIG``, ``./ingest.toml``."""
    if path is None and env.get(ENV_CONFIG_FILE):
        path = Path(env[ENV_CONFIG_FILE])
    if path is None and DEFAULT_CONFIG_FILE.is_file():
        path = DEFAULT_CONFIG_FILE
    return path


def check_configuration(
    settings: Settings,
    *,
    config_file: Path | None = None,
    source: str | None = None,
    env: Mapping[str, str] | None = None,
) -> CheckReport:
    """Every check described in the module docstring; raises a StopError for the first problem."""
    from sink_workers.run import check_targets
    from source_workers.connectors import CONNECTORS

    env = os.environ if env is None else env
    known = ", ".join(CONNECTORS)
    if source is not None and source not in settings.sources and source not in CONNECTORS:
        configured = ", ".join(sorted(settings.sources)) or "none"
        raise ConfigError(
            f"--source {source}: no such source is configured (configured: {configured}) "
            f"and no connector has that name (known: {known})"
        )
    for name, source_settings in sorted(settings.sources.items()):
        if source_settings.connector is not None and source_settings.connector not in CONNECTORS:
            raise ConfigError(
                f"sources.{name}.connector: no connector {source_settings.connector!r} "
                f"(known: {known})"
            )
    _check_tls_files(settings)
    effective = with_connector_defaults(settings, source)
    connectors = tuple(_check_connectors(settings, effective, source, env))
    catalog = schema_catalog(effective)
    schemas_dir = effective.staging.schemas_dir
    if schemas_dir is not None and not schemas_dir.is_dir():
        raise ConfigError(f"staging.schemas_dir: {schemas_dir} is not a directory")
    for name, source_settings in sorted(effective.sources.items()):
        for resource, resource_settings in sorted(source_settings.resources.items()):
            try:
                catalog.load(resource_settings.schema_file)
            except SchemaError as exc:
                raise SchemaError(
                    f"sources.{name}.resources.{resource}.schema_file: {exc}"
                ) from None
    try:
        catalog.load_all()  # a sink loads every version in the folder
    except SchemaError as exc:
        raise SchemaError(f"schemas folder {catalog.root}: {exc}") from None
    staged_resources(effective, catalog)  # names, keys, id and time fields, topics
    check_targets(effective, catalog)
    return CheckReport(
        settings=effective,
        config_file=config_file_of(config_file, env),
        environment=tuple(
            sorted(n for n in env if n.startswith(ENV_PREFIX) and n != ENV_CONFIG_FILE)
        ),
        connectors=connectors,
    )


def _check_connectors(
    configured: Settings, effective: Settings, only: str | None, env: Mapping[str, str]
) -> list[ConnectorReport]:
    """Each connector source's resources, and its connector settings (of ``only``, if given)."""
    from source_workers.connectors import CONNECTORS, connector_of, load_connector

    reports = []
    for name, source_settings in sorted(effective.sources.items()):
        if source_settings.connector is None and name not in CONNECTORS:
            continue  # declared by hand: sinks can read it, no source worker runs it
        connector = load_connector(connector_of(name, source_settings.connector))
        defined = {r.name for r in connector.build(name).resources}
        declared = configured.sources[name].resources if name in configured.sources else {}
        for resource in sorted(declared):
            if resource not in defined:
                raise ConfigError(
                    f"sources.{name}.resources.{resource}: connector {connector.name} has no "
                    f"resource {resource!r} (its resources: {', '.join(sorted(defined))})"
                )
        if only is not None and name != only:
            continue
        try:
            options = connector_settings(connector.spec.settings, connector.spec.env_prefix, env)
        except ConfigError as exc:
            raise ConfigError(f"source {name}: {exc}") from None
        _refuse_unknown_variables(
            name, connector.name, connector.spec.settings, connector.spec.env_prefix, env
        )
        reports.append(
            ConnectorReport(
                source=name,
                connector=connector.name,
                env_prefix=connector.spec.env_prefix,
                settings=masked(options.model_dump(mode="json", by_alias=True)),
            )
        )
    return reports


def _refuse_unknown_variables(
    source: str, connector: str, model: Any, prefix: str, env: Mapping[str, str]
) -> None:
    """A ``<PREFIX>_*`` variable that is no connector setting is a typo: the worker would
    silently ignore it (``COINBASE_PRODUCT`` for ``COINBASE_PRODUCTS``)."""
    known = connector_variables(model, prefix)
    for variable in sorted(env):
        if variable.startswith(f"{prefix}_") and variable not in known:
            names = ", ".join(sorted(known))
            raise ConfigError(
                f"source {source}: environment variable {variable} is not a {connector} "
                f"setting (known: {names})"
            )


def _check_tls_files(settings: Settings) -> None:
    """The certificate and key files the workers will open exist and are readable."""
    checks: list[tuple[str, Any, tuple[tuple[str, bool], ...]]] = []
    if settings.kafka.security_protocol in ("SSL", "SASL_SSL"):
        checks.append(("kafka", settings.kafka, _KAFKA_FILES))
    if settings.clickhouse.dsn.startswith("https://"):
        checks.append(("clickhouse", settings.clickhouse, _CLICKHOUSE_FILES))
    for section, model, fields in checks:
        for field, directory_allowed in fields:
            value = getattr(model, field)
            if value is None or (field == "ssl_ca_location" and value == "probe"):
                continue
            path = Path(value)
            usable = path.is_file() or (directory_allowed and path.is_dir())
            if not usable or not os.access(path, os.R_OK):
                kind = "file or directory" if directory_allowed else "file"
                raise ConfigError(f"{section}.{field}: {value} is not a readable {kind}")


# --- masking ---------------------------------------------------------------


def mask_url(value: str) -> str:
    """``value`` with a URL's user-info and secret-looking query values masked.

    Errs on the side of masking: everything before the last ``@`` of the
    authority goes, even when a password holds an unescaped ``#`` or ``?``.
    """
    scheme, sep, rest = value.partition("://")
    if not sep or not _SCHEME.match(scheme):
        return value
    authority, slash, tail = rest.partition("/")
    if "@" in authority:
        authority = f"{MASK}@{authority.rpartition('@')[2]}"
    before, question, query = f"{authority}{slash}{tail}".partition("?")
    if not question:
        return f"{scheme}://{before}"
    query, hash_, fragment = query.partition("#")
    pieces = []
    for piece in query.split("&"):
        name, equals, _ = piece.partition("=")
        pieces.append(f"{name}={MASK}" if equals and _SECRET_PARAMETER.search(name) else piece)
    return f"{scheme}://{before}?{'&'.join(pieces)}{hash_}{fragment}"


def masked(value: Any) -> Any:
    """A JSON-shaped value with every URL in it masked (SecretStr already dumps masked)."""
    if isinstance(value, str):
        return mask_url(value)
    if isinstance(value, Mapping):
        return {key: masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [masked(item) for item in value]
    return value


# --- output ----------------------------------------------------------------


def report_json(report: CheckReport) -> dict[str, Any]:
    return {
        "config_file": str(report.config_file) if report.config_file else None,
        "environment_overrides": list(report.environment),
        "settings": masked(report.settings.model_dump(mode="json")),
        "connectors": {
            c.source: {"connector": c.connector, "env_prefix": c.env_prefix, "settings": c.settings}
            for c in report.connectors
        },
        "sources": len(report.settings.sources),
        "resources": report.resource_count,
        "ok": True,
    }


def report_text(report: CheckReport) -> str:
    """The effective settings as TOML (loadable again, secrets masked), with comments."""
    file = report.config_file
    lines = [
        "# durable-ingest effective configuration (secrets shown as **********)",
        f"# file: {file} ({file.resolve()})" if file else "# file: none (built-in defaults)",
        "# environment overrides: " + (", ".join(report.environment) or "none"),
        "",
        *toml_lines(masked(report.settings.model_dump(mode="json"))),
    ]
    for c in report.connectors:
        lines += ["", f"# source {c.source}: connector {c.connector}, {c.env_prefix}_* variables:"]
        for key, value in c.settings.items():
            lines.append(f"#   {c.env_prefix}_{key.upper()}={_env_value(value)}")
    return "\n".join(lines)


def toml_lines(data: Mapping[str, Any], table: tuple[str, ...] = ()) -> list[str]:
    """``data`` as TOML: scalars, then sub-tables; an unset (None) value as a comment."""
    scalars = [(k, v) for k, v in data.items() if not isinstance(v, Mapping)]
    tables = [(k, v) for k, v in data.items() if isinstance(v, Mapping)]
    lines = []
    if table and (scalars or not tables):
        lines.append(f"[{'.'.join(_toml_key(part) for part in table)}]")
    for key, value in scalars:
        if value is None:
            lines.append(f"# {_toml_key(key)}: unset")
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, value in tables:
        sub = toml_lines(value, (*table, key))
        lines += ["", *sub] if lines else sub
    return lines


def _env_value(value: Any) -> str:
    """A connector setting as its environment variable would spell it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value)


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # JSON escapes are TOML escapes
