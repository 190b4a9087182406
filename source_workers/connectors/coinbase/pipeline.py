"""Composition of the Coinbase connector: source, resources, settings, defaults.

Staging defaults come from the resource definitions (topic
``ingest.<source>.matches``, 3 partitions, 7 days); ``[sources.<name>.resources.matches]``
in ``ingest.toml`` may override them. The checkpoint is the ledger's
contiguous trade id and last sequence per product, loaded at start from what
the sinks confirmed written.
"""

from __future__ import annotations

from functools import partial

from source_workers.authoring import Source, define_source
from source_workers.capture import ReplaySpec
from source_workers.connectors import ConnectorSpec
from source_workers.connectors.coinbase.resources import matches
from source_workers.connectors.coinbase.settings import CoinbaseSettings
from source_workers.connectors.coinbase.source import control, start
from source_workers.connectors.coinbase.trades import TradeLedger


def build(name: str = "coinbase", settings: CoinbaseSettings | None = None) -> Source:
    """A fresh Coinbase source (its own ledger) called ``name``."""
    process = matches.Matches(
        TradeLedger(max_jump=(settings or CoinbaseSettings()).max_backfill_trades)
    )
    return define_source(
        name=name,
        resources=[matches.resource(process)],
        start=partial(start, matches=process),
        control=control,
    )


CONNECTOR = ConnectorSpec(
    build=build,
    settings=CoinbaseSettings,
    env_prefix="COINBASE",
    # The public feed over a websocket; gaps filled over REST.
    kind="websocket",
    # ingest dev coinbase --replay: the feed from a capture; trades carry their products.
    replay=ReplaySpec(
        websocket_env="COINBASE_WS_URL", http_env=("COINBASE_REST_URL",), keep=("products",)
    ),
    checkpoint={
        "matches": {
            "description": "Per product: the highest trade id below which every trade is staged "
            "(it never passes an open gap), and the feed sequence of the last trade seen.",
            "type": "object",
            "properties": {
                "products": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "properties": {
                            "trade_id": {"type": "integer"},
                            "sequence": {"type": ["integer", "null"]},
                        },
                        "required": ["trade_id", "sequence"],
                    },
                }
            },
            "required": ["products"],
        }
    },
)
