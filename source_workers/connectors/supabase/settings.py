"""The ``supabase`` connector's settings: the ``SUPABASE_*`` variables, validated."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from source_workers.transport.urls import is_loopback


class SupabaseSettings(BaseModel):
    """``SUPABASE_*`` environment variables (see docs/sources.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    url: str | None = None
    """The project URL, e.g. ``https://abcd.supabase.co`` (required)."""
    service_role_key: SecretStr | None = None
    anon_key: SecretStr | None = None
    db_schema: str = Field("public", alias="schema")
    """``SUPABASE_SCHEMA``: the Postgres schema of the tables."""
    tables: tuple[str, ...] = ("projects", "time_entries")
    heartbeat_interval_s: float = Field(25.0, gt=0)
    join_timeout_s: float = Field(10.0, gt=0)
    backfill: bool = False
    backfill_column: str = "updated_at"
    backfill_page_size: int = Field(1000, ge=1, le=10_000)
    backfill_margin_s: float = Field(60.0, ge=0)
    """The backfill starts this long before the checkpoint (commit times and the
    backfill column come from different clocks)."""

    @field_validator("tables", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [t.strip() for t in value.split(",") if t.strip()]
        return value

    @model_validator(mode="after")
    def _complete(self) -> SupabaseSettings:
        if not self.url or not self.url.startswith(("http://", "https://")):
            raise ValueError("SUPABASE_URL must be set to the project's http(s) URL")
        if self.url.startswith("http://") and not is_loopback(self.url):
            raise ValueError(
                "SUPABASE_URL must be https:// (the key would travel in clear text); "
                "http:// is accepted for this machine only"
            )
        if self.service_role_key is None and self.anon_key is None:
            raise ValueError("set SUPABASE_SERVICE_ROLE_KEY (or SUPABASE_ANON_KEY)")
        for name in (self.db_schema, self.backfill_column, *self.tables):
            if not name.replace("_", "").isalnum():
                raise ValueError(f"{name!r} is not a plain Postgres identifier")
        return self

    @property
    def key(self) -> str:
        secret = self.service_role_key or self.anon_key
        assert secret is not None
        return secret.get_secret_value()

    @property
    def websocket_url(self) -> str:
        assert self.url is not None
        base = self.url.rstrip("/").replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        return f"{base}/realtime/v1/websocket?" + urlencode({"apikey": self.key, "vsn": "1.0.0"})
