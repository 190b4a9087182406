"""Connectors: one folder per provider, each following the same contract.

``connectors/<name>/``:

* ``source.py``: the Source: its settings (from ``<NAME>_*`` variables), its
  protocol handling (``control``) and ``start(ctx)``, which only connects,
  subscribes and emits raw messages;
* ``resources/<resource>.py``: one Resource per file: its schema, key,
  ``parse`` and ``process``;
* ``pipeline.py``: composition: ``build()`` returns the Source with its
  Resources, plus ``SETTINGS`` (the settings model), ``ENV_PREFIX``, ``KIND``
  (``websocket`` or ``http``: how the source reaches its provider),
  ``CHECKPOINT`` (the JSON Schema of each resource's checkpoint) and,
  optionally, ``REPLAY`` (how ``ingest dev --replay`` plays a capture);
* ``workflow.py``: the long-running worker entry point
  (``python -m source_workers.connectors.<name>.workflow``).

Every folder here with a ``pipeline.py`` is a connector (``ingest new-source``
adds one); ``tests/unit/test_connector_contract.py`` checks each.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from foundation.errors import ConfigError

CONNECTORS: tuple[str, ...] = tuple(
    sorted(p.parent.name for p in Path(__file__).parent.glob("*/pipeline.py"))
)


@dataclass(frozen=True, slots=True)
class Connector:
    name: str
    pipeline: ModuleType

    @property
    def settings_model(self) -> Any:
        return self.pipeline.SETTINGS

    @property
    def env_prefix(self) -> str:
        return str(self.pipeline.ENV_PREFIX)


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
    return Connector(name, importlib.import_module(f"source_workers.connectors.{name}.pipeline"))


__all__ = ["CONNECTORS", "Connector", "connector_of", "load_connector"]
