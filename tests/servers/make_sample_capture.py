"""Writes the shipped sample capture of the Coinbase feed (``ingest dev coinbase --replay``).

Synthetic, seeded and reproducible: frames in the documented Coinbase Exchange
feed format (``subscriptions``, ``last_match`` per product on subscribe, then
``match`` per trade and a ``heartbeat`` per product every second), made here
because this project's machines have no internet to record the live feed.
Record a real one with ``ingest source run coinbase --record FILE``.

    .venv/bin/python -m tests.servers.make_sample_capture OUT.jsonl
"""

from __future__ import annotations

import json
import random
import sys
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from source_workers.capture import CaptureRecorder

START = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
PRODUCTS = {"BTC-USD": Decimal("97250.00"), "ETH-USD": Decimal("3612.40")}
SECONDS = 25
TRADES_PER_SECOND = 40


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def main(out: Path) -> int:
    rng = random.Random(20261201)
    clock = [0.0]

    class ScriptClock:
        """The capture's own time, set by the script as it writes (a heartbeat goes back)."""

        def monotonic(self) -> float:
            return clock[0]

    recorder = CaptureRecorder(
        out,
        "coinbase",
        {"products": list(PRODUCTS)},
        clock=ScriptClock(),  # type: ignore[arg-type]
        note="synthetic sample in the Coinbase Exchange feed format "
        "(tests/servers/make_sample_capture.py); record a live one with --record",
    )
    price = dict(PRODUCTS)
    trade_id = {"BTC-USD": 887_412_000, "ETH-USD": 612_905_000}
    sequence = {"BTC-USD": 101_220_000_000, "ETH-USD": 59_010_000_000}

    def trade(product: str, kind: str = "match") -> str:
        trade_id[product] += 1
        sequence[product] += rng.randint(2, 40)  # the book's events use the numbers between
        tick = Decimal("0.01")
        price[product] = (price[product] * Decimal(1 + rng.gauss(0, 0.00004))).quantize(tick)
        size = Decimal(rng.lognormvariate(-5, 1.4)).quantize(Decimal("0.00000001"))
        return json.dumps(
            {
                "type": kind,
                "trade_id": trade_id[product],
                "maker_order_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "taker_order_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "side": rng.choice(("buy", "sell")),
                "size": str(max(size, Decimal("0.00000001"))),
                "price": str(price[product]),
                "product_id": product,
                "sequence": sequence[product],
                "time": _iso(START + timedelta(seconds=clock[0])),
            }
        )

    channels = [{"name": c, "product_ids": list(PRODUCTS)} for c in ("matches", "heartbeat")]
    recorder.record(json.dumps({"type": "subscriptions", "channels": channels}))
    for product in PRODUCTS:
        recorder.record(trade(product, "last_match"))
    next_heartbeat = 1.0
    while clock[0] < SECONDS:
        clock[0] += rng.expovariate(TRADES_PER_SECOND)
        while clock[0] >= next_heartbeat:
            saved, clock[0] = clock[0], next_heartbeat
            for product in PRODUCTS:
                recorder.record(
                    json.dumps(
                        {
                            "type": "heartbeat",
                            "sequence": sequence[product],
                            "last_trade_id": trade_id[product],
                            "product_id": product,
                            "time": _iso(START + timedelta(seconds=next_heartbeat)),
                        }
                    )
                )
            clock[0] = saved
            next_heartbeat += 1.0
        product = "BTC-USD" if rng.random() < 0.6 else "ETH-USD"
        recorder.record(trade(product))
    recorder.close()
    print(f"{out}: {recorder.frames} frames")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
