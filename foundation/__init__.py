"""The foundation layer: what every other layer may import, and which imports none of them.

:mod:`.errors` (the error tree, grouped by what the caller must do),
:mod:`.config` (the settings models, validated in one place) and
:mod:`.config_load` (reading them from ``ingest.toml`` and ``INGEST_*``),
:mod:`.metrics` and :mod:`.admin` (the Prometheus registry and the admin port
that serves it), :mod:`.log_throttle`, :mod:`.clock` (the one clock), :mod:`.backoff` (the one
retry schedule) and
:mod:`.process` (the frame of every process). See docs/architecture.md for
the layers.
"""

from foundation.config import Settings, settings_from
from foundation.config_load import load_settings
from foundation.errors import (
    BackoffError,
    ConfigError,
    DeadLetterError,
    IngestError,
    RetryError,
    StopError,
)
from foundation.metrics import Metrics

__all__ = [
    "BackoffError",
    "ConfigError",
    "DeadLetterError",
    "IngestError",
    "Metrics",
    "RetryError",
    "Settings",
    "StopError",
    "load_settings",
    "settings_from",
]
