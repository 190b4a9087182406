"""The ``coinbase`` connector's settings: the ``COINBASE_*`` variables, validated."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class CoinbaseSettings(BaseModel):
    """``COINBASE_*`` environment variables (see docs/sources.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ws_url: str = "wss://ws-feed.exchange.coinbase.com"
    rest_url: str = "https://api.exchange.coinbase.com"
    products: tuple[str, ...] = ("BTC-USD", "ETH-USD")
    """Comma-separated in the environment: ``COINBASE_PRODUCTS=BTC-USD,ETH-USD``."""
    backfill_grace_s: float = Field(2.0, ge=0)
    """How long a gap stays open before REST is asked (a reordered trade may fill it)."""
    rest_page_size: int = Field(1000, ge=1, le=1000)
    rest_min_interval_s: float = Field(0.15, ge=0)
    """At least this long between REST requests (public limit: about 10 per second)."""
    rest_max_attempts: int = Field(8, ge=1)
    max_backfill_trades: int = Field(2_000_000, ge=1)
    """A gap larger than this is backfilled for its newest trades only; the rest is
    given up, counted in ingest_coinbase_trades_given_up_total and logged."""

    @field_validator("products", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [p.strip() for p in value.split(",") if p.strip()]
        return value

    @field_validator("products")
    @classmethod
    def _valid(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("name at least one product, e.g. BTC-USD")
        for product in value:
            if not product.replace("-", "").isalnum() or len(product) > 32:
                raise ValueError(f"{product!r} is not a product id like BTC-USD")
        return value

    @field_validator("ws_url")
    @classmethod
    def _ws(cls, value: str) -> str:
        if not value.startswith(("ws://", "wss://")):
            raise ValueError("must start with ws:// or wss://")
        return value

    @field_validator("rest_url")
    @classmethod
    def _rest(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")
