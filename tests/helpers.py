"""Test data shared by the suites: trade rows and resources with unique names."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from staging.resource import StagedResource
from staging.schemas import SchemaCatalog

PRODUCTS = ("BTC-USD", "ETH-USD", "SOL-USD", "ETH-BTC")
T0 = datetime(2026, 11, 22, 3, 0, 0, tzinfo=UTC)


def trade(i: int, product: str | None = None) -> dict[str, Any]:
    """The i-th synthetic Coinbase trade (deterministic)."""
    return {
        "product_id": product or PRODUCTS[i % len(PRODUCTS)],
        "trade_id": 1_000_000 + i,
        "sequence": 50_000_000 + i,
        "time": T0 + timedelta(microseconds=137 * i),
        "side": "buy" if i % 2 else "sell",
        "price": Decimal("43210.12") + Decimal(i % 100) / 100,
        "size": Decimal("0.00123456"),
        "maker_order_id": str(uuid.UUID(int=2 * i + 1)),
        "taker_order_id": str(uuid.UUID(int=2 * i + 2)),
    }


def trades(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [trade(i) for i in range(start, start + n)]


def unique(prefix: str = "t") -> str:
    """A fresh lowercase name usable as a source or resource name."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def trade_resource(
    catalog: SchemaCatalog,
    *,
    source: str | None = None,
    name: str | None = None,
    partitions: int = 3,
) -> StagedResource:
    """A trades resource on its own fresh topic."""
    return StagedResource.define(
        source=source or unique("src"),
        name=name or unique("res"),
        schema=catalog.load("coinbase/matches.avsc"),
        key=("product_id",),
        id_fields=("product_id", "trade_id"),
        time_field="time",
        partitions=partitions,
    )
