"""What a connector declares: ``CONNECTOR = ConnectorSpec(...)`` at the end of its
``pipeline.py``, typed and checked once, instead of module globals read by name."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from foundation.errors import SourceDefinitionError
from source_workers.authoring import Source
from source_workers.capture import ReplaySpec

Kind = Literal["websocket", "http"]
KINDS: tuple[Kind, ...] = ("websocket", "http")
_PREFIX = re.compile(r"^[A-Z][A-Z0-9_]{0,30}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectorSpec:
    """One connector, as its ``pipeline.py`` composes it."""

    build: Callable[..., Source]
    """``build(name, settings=None)``: a fresh Source called ``name`` with its Resources
    (and per-worker state, such as a ledger), for these connector settings."""
    settings: type[BaseModel]
    """The settings model, read from ``<env_prefix>_*`` variables."""
    env_prefix: str
    """e.g. ``COINBASE``: ``COINBASE_PRODUCTS`` sets ``products``."""
    kind: Kind
    """How the source reaches its provider: ``websocket`` or ``http`` (polling)."""
    checkpoint: Mapping[str, Mapping[str, Any]]
    """The JSON Schema of each resource's checkpoint (what the source resumes from)."""
    replay: ReplaySpec | None = None
    """How ``ingest dev <connector> --replay`` plays a capture (websocket connectors)."""

    def __post_init__(self) -> None:
        problems = []
        if not _PREFIX.match(self.env_prefix):
            problems.append(f"env_prefix {self.env_prefix!r} is not like COINBASE")
        if self.kind not in KINDS:
            problems.append(f"kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if not (isinstance(self.settings, type) and issubclass(self.settings, BaseModel)):
            problems.append(f"settings {self.settings!r} is not a pydantic model")
        if self.replay is not None and self.kind != "websocket":
            problems.append("replay plays websocket captures: an http connector has none")
        if problems:
            raise SourceDefinitionError(
                f"connector spec: {'; '.join(problems)}", source="", resource=""
            )
