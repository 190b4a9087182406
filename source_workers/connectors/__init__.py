"""Connectors: one folder per provider, each following the same contract.

``connectors/<name>/``:

* ``source.py``: the Source: its settings (from ``<NAME>_*`` variables), its
  protocol handling (``control``) and ``start(ctx)``, which only connects,
  subscribes and emits raw messages;
* ``resources/<resource>.py``: one Resource per file: its schema, key,
  ``parse`` and ``process``;
* ``pipeline.py``: composition: ``build()`` returns the Source with its
  Resources, and ``CONNECTOR = ConnectorSpec(...)`` declares the connector:
  ``build``, ``settings`` (the settings model), ``env_prefix``, ``kind``
  (``websocket`` or ``http``: how the source reaches its provider),
  ``checkpoint`` (the JSON Schema of each resource's checkpoint) and,
  optionally, ``replay`` (how ``ingest dev --replay`` plays a capture);
* ``workflow.py``: the long-running worker entry point
  (``python -m source_workers.connectors.<name>.workflow``).

Every folder here with a ``pipeline.py`` is a connector (``ingest new-source``
adds one); ``tests/unit/test_connector_contract.py`` checks each.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from foundation.errors import ConfigError, SourceDefinitionError
from source_workers.authoring import Source
from source_workers.connectors.spec import ConnectorSpec

CONNECTORS: tuple[str, ...] = tuple(
    sorted(p.parent.name for p in Path(__file__).parent.glob("*/pipeline.py"))
)


@dataclass(frozen=True, slots=True)
class Connector:
    """A connector found by its folder: its name and what its ``pipeline.py`` declares."""

    name: str
    spec: ConnectorSpec

    def build(self, name: str, settings: BaseModel | None = None) -> Source:
        """A fresh Source of this connector called ``name``."""
        return self.spec.build(name, settings)


def connector_of(source: str, configured: str | None) -> str:
    """The connector a source runs: the one configured, else the source's own name."""
    return configured or source


def load_connector(name: str) -> Connector:
    """The connector called ``name``; raises ConfigError naming the known ones."""
    if name not in CONNECTORS:
        raise ConfigError(
            f"no connector {name!r} (known: {', '.join(CONNECTORS)}); set "
            '[sources.<name>] connector = "..." to run a connector under another name'
        )
    try:
        pipeline = importlib.import_module(f"source_workers.connectors.{name}.pipeline")
    except SourceDefinitionError as exc:
        raise ConfigError(f"connector {name}: {exc}") from None
    spec = getattr(pipeline, "CONNECTOR", None)
    if not isinstance(spec, ConnectorSpec):
        raise ConfigError(
            f"connector {name}: its pipeline.py declares no CONNECTOR = ConnectorSpec(...)"
        )
    return Connector(name, spec)


__all__ = ["CONNECTORS", "Connector", "ConnectorSpec", "connector_of", "load_connector"]
