"""Where settings come from, lowest precedence first: built-in defaults, a TOML file
(``--config``, else ``$INGEST_CONFIG``, else ``./ingest.toml`` when present), then
environment variables ``INGEST_<SECTION>_<FIELD>``, then flags; and a connector's own
``<PREFIX>_<FIELD>`` variables. Validation itself is :mod:`foundation.config`'s.

Secrets come from the environment only: a TOML file that sets one is refused, as a
DSN with a password is.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from foundation.config import (
    DEFAULT_CONFIG_FILE,
    ENV_CONFIG_FILE,
    ENV_PREFIX,
    SECTIONS,
    ModelT,
    Settings,
    error_lines,
    settings_from,
)
from foundation.errors import ConfigError


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """Nested settings from ``INGEST_*`` variables; unknown names are an error."""
    result: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_CONFIG_FILE:
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        if rest == "data_dir":
            result["data_dir"] = value
            continue
        section, _, field = rest.partition("_")
        model = SECTIONS.get(section)
        if model is None or field not in model.model_fields or field in ("producer", "consumer"):
            raise ConfigError(f"environment variable {name} is not a durable-ingest setting")
        result.setdefault(section, {})[field] = value
    return result


def connector_variables(model: type[BaseModel], prefix: str) -> dict[str, str]:
    """The one naming rule of connector variables: ``<PREFIX>_<FIELD or its alias, upper
    case>``, each to the name the model validates (the alias, if any):
    ``{"COINBASE_WS_URL": "ws_url", "SUPABASE_SCHEMA": "schema", ...}``."""
    return {
        f"{prefix}_{(info.alias or field).upper()}": info.alias or field
        for field, info in model.model_fields.items()
    }


def connector_settings(
    model: type[ModelT], prefix: str, env: Mapping[str, str] | None = None
) -> ModelT:
    """A connector's settings from ``<PREFIX>_<FIELD>`` environment variables.

    ``connector_settings(CoinbaseSettings, "COINBASE")`` reads ``COINBASE_WS_URL``
    into ``ws_url``. Raises :class:`ConfigError` naming the variable, never its value.
    """
    env = os.environ if env is None else env
    data = {
        name: env[variable]
        for variable, name in connector_variables(model, prefix).items()
        if variable in env
    }
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = error_lines(
            exc, lambda loc: f"{prefix}_{loc[0].upper()}" if loc else f"{prefix} settings"
        )
        raise ConfigError(f"invalid {prefix.lower()} settings: {lines}") from None


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"configuration file {path} is not UTF-8 text (byte {exc.start})"
        ) from None
    except OSError as exc:
        raise ConfigError(f"configuration file {path} cannot be read: {exc.strerror}") from None


def secret_fields() -> dict[str, list[str]]:
    """Per section, the settings that are secrets (``SecretStr``)."""
    return {
        section: [
            name for name, info in model.model_fields.items() if "SecretStr" in str(info.annotation)
        ]
        for section, model in SECTIONS.items()
    }


def refuse_secrets_in_file(data: Mapping[str, Any], path: Path) -> None:
    """ConfigError naming the first secret setting the file sets (never its value): secrets
    come from the environment only, as a DSN password is refused."""
    for section, names in secret_fields().items():
        values = data.get(section)
        if not isinstance(values, Mapping):
            continue
        for name in names:
            if name in values:
                variable = f"{ENV_PREFIX}{section.upper()}_{name.upper()}"
                raise ConfigError(
                    f"configuration file {path} sets {section}.{name}, a secret: remove it "
                    f"and set {variable} in the environment instead (secrets stay out of "
                    "files, which are committed and copied)"
                )


def load_settings(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Defaults, then the TOML file, then ``INGEST_*`` variables, then ``overrides`` (flags)."""
    env = os.environ if env is None else env
    if path is None and env.get(ENV_CONFIG_FILE):
        path = Path(env[ENV_CONFIG_FILE])
    if path is None and DEFAULT_CONFIG_FILE.is_file():
        path = DEFAULT_CONFIG_FILE
    data: dict[str, Any] = read_toml(path) if path is not None else {}
    if path is not None:
        refuse_secrets_in_file(data, path)
    origin = str(path) if path is not None else "defaults"
    from_env = _env_overrides(env)
    if from_env:
        origin += " + environment"
    merged = _merge(data, from_env)
    if overrides:
        merged = _merge(merged, overrides)
        origin += " + command line"
    return settings_from(merged, origin)
