"""End to end: trades at fixed rates, from the provider to rows you can query.

Run as ``python bench/e2e.py [--rates 1000,5000,10000,20000,40000] [--step-s 30]``
(quick check: ``--rates 500,2000 --step-s 10``; ``--engine kafka`` for Apache
Kafka). The pipeline as deployed, on this machine:

* the Coinbase test exchange (``tests/servers/coinbase.py``) in this process,
  stamping each trade with the wall clock and sending it on its websocket
  feed, two products, at a fixed rate per step;
* one ``ingest source run`` process (the Coinbase connector) and one ``ingest
  sink run`` process (embedded chDB, which it owns), started once with
  ``--admin-port 0``;
* the embedded broker (Tansu), or Apache Kafka with ``--engine kafka``.

Freshness is measured from outside the product: every 0.1 s this process asks
the sink's ``POST /sql`` for the newest trade id per product. A product's
trades stay in one partition and one sink writes them in order, so every trade
up to that id is visible then; its freshness is that moment minus its trade
time. A trade not visible within ``--grace-s`` (5 s) after its step counts
as never. The exchange sends at most 50 ms of trades at a time: when it falls
behind, the step says so. Per step it reports the trades emitted, staged (the source's
``ingest_source_records_staged_total``) and visible per second; freshness p50,
p95 and p99; each process's CPU (share of one core) and RSS at the step's end
(this process runs the exchange, the rate and the polls). A step holds when
every emitted trade became visible within the grace and p99 is at most 2 s. The run stops at the first step that
does not hold, or at which the exchange could not emit 0.95 of the rate; the
pipeline drains between steps.

The aims of issue 16: p99 freshness at most 1 s at 10,000 trades/s, and the
highest rate holding p99 <= 2 s.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import benchlib

# The repository, for tests/: the test exchange and the pipeline's process helpers.
sys.path.append(str(Path(__file__).resolve().parents[1]))

from tests.integration.pipeline import PRODUCTS, Pipeline
from tests.servers.coinbase import CoinbaseExchange

POLL_S = 0.1
TICK_S = 0.01
HOLD_P99_S = 2.0


def cpu_seconds(pid: int | None) -> float:
    """User plus system CPU time of a process so far."""
    if pid is None:
        return math.nan
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / 100  # utime, stime in clock ticks (100 Hz)


def rss_mib(pid: int | None) -> float:
    if pid is None:
        return math.nan
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


def admin_port(log: Path, timeout_s: float = 90) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = re.search(r"admin port: http://127\.0\.0\.1:(\d+)", log.read_text())
        if found:
            return int(found.group(1))
        time.sleep(0.2)
    raise RuntimeError(f"no admin port in {log}:\n{log.read_text()[-2000:]}")


def staged_total(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("ingest_source_records_staged_total")
    )


@dataclass
class Visibility:
    """Polls the sink's /sql for the newest trade id per product, in a thread."""

    port: int
    table: str
    newest: dict[str, int] = field(default_factory=dict)
    seen_at: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    """Per product: (newest id, wall time) after each poll that moved it."""

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _query(self) -> dict[str, int]:
        sql = f"SELECT product_id, max(trade_id) FROM default.{self.table} GROUP BY product_id"
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/sql", data=sql.encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return {str(p): int(i) for p, i in json.loads(response.read())["rows"]}

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                newest = self._query()
            except OSError:
                continue  # the table is not there yet
            now = time.time()
            for product, top in newest.items():
                if top > self.newest.get(product, -1):
                    self.newest[product] = top
                    self.seen_at.setdefault(product, []).append((top, now))

    def visible_at(self, product: str, trade_id: int) -> float:
        """When ``trade_id`` of ``product`` was first seen visible (inf: not yet)."""
        for top, at in self.seen_at.get(product, []):
            if top >= trade_id:
                return at
        return math.inf

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


@dataclass
class Step:
    rate: int
    emitted: int
    seconds: float
    staged: int
    freshness: list[float]
    cpu: dict[str, float]
    rss: dict[str, float]

    @property
    def visible(self) -> int:
        return sum(1 for f in self.freshness if f != math.inf)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.freshness)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else math.nan

    @property
    def emitted_ok(self) -> bool:
        return self.emitted >= 0.95 * self.rate * self.seconds

    @property
    def holds(self) -> bool:
        return (
            self.emitted_ok and self.visible == self.emitted and self.percentile(0.99) <= HOLD_P99_S
        )


def emit(
    exchange: CoinbaseExchange, rate: int, seconds: float
) -> tuple[list[tuple[str, int, float]], float]:
    """Trades at ``rate`` a second for ``seconds``, spread over the products; returns each
    (product, id, trade time) and the time it took. An exchange that cannot keep up
    sends fewer (the step then says so)."""
    made: list[tuple[str, int, float]] = []
    started = time.monotonic()
    turn = 0
    most = max(1, rate // 20)  # 50 ms of trades per send: behind, the exchange falls short
    while (elapsed := time.monotonic() - started) < seconds:
        due = min(int(rate * elapsed) - len(made), most)
        if due > 0:
            product = PRODUCTS[turn % len(PRODUCTS)]
            turn += 1
            for trade in exchange.trade(product, due):
                made.append((product, trade.trade_id, trade.time.timestamp()))
        time.sleep(TICK_S)
    return made, time.monotonic() - started


def run_step(
    pipeline: Pipeline,
    visibility: Visibility,
    rate: int,
    step_s: float,
    grace_s: float,
    pids: dict[str, int | None],
    source_port: int,
) -> Step:
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    staged_before = staged_total(source_port)
    started = time.monotonic()
    made, seconds = emit(pipeline.exchange, rate, step_s)
    wall = time.monotonic() - started
    cpu = {name: (cpu_seconds(pid) - cpu_before[name]) / wall for name, pid in pids.items()}
    staged = staged_total(source_port) - staged_before
    rss = {name: rss_mib(pid) for name, pid in pids.items()}
    last = {p: max((i for q, i, _ in made if q == p), default=-1) for p in PRODUCTS}
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(
        visibility.newest.get(p, -1) < last[p] for p in PRODUCTS
    ):
        time.sleep(POLL_S)
    freshness = [
        max(0.0, visibility.visible_at(product, trade_id) - at) for product, trade_id, at in made
    ]
    return Step(rate, len(made), seconds, staged, freshness, cpu, rss)


def drain(pipeline: Pipeline, visibility: Visibility, timeout_s: float = 60) -> None:
    """Wait until the newest trade of every product is visible."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(
            visibility.newest.get(p, -1) >= pipeline.exchange.trades[p][-1].trade_id
            for p in PRODUCTS
        ):
            return
        time.sleep(POLL_S)


def report(steps: list[Step], engine: str, step_s: float) -> None:
    print()
    print(
        f"durable-ingest end to end: Coinbase test exchange -> ingest source run -> "
        f"{benchlib.ENGINES[engine]} -> ingest sink run (chDB), steps of {step_s:.0f} s"
    )
    print(benchlib.versions_line(f"chdb {benchlib.package_version('chdb')}"))
    names = list(steps[0].cpu) if steps else []
    print()
    head = f"{'rate':>7} {'emitted/s':>9} {'staged/s':>9} {'written/s':>9} {'p50 s':>6} {'p95 s':>6} {'p99 s':>6}"
    head += "".join(f" {n + ' cpu':>11} {n + ' MiB':>11}" for n in names) + "  holds"
    print(head)
    print("-" * len(head))
    for s in steps:
        line = (
            f"{s.rate:>7,} {s.emitted / s.seconds:>9,.0f} {s.staged / s.seconds:>9,.0f} "
            f"{s.visible / s.seconds:>9,.0f} {s.percentile(0.5):>6.2f} "
            f"{s.percentile(0.95):>6.2f} {s.percentile(0.99):>6.2f}"
        )
        line += "".join(f" {s.cpu[n]:>11.0%} {s.rss[n]:>11,.0f}" for n in names)
        line += "  " + ("yes" if s.holds else "no" if s.emitted_ok else "exchange short")
        print(line)
    print()
    held = [s.rate for s in steps if s.holds]
    print(
        f"highest rate that held (p99 <= {HOLD_P99_S:.0f} s): {max(held):,}/s"
        if held
        else "no step held"
    )
    at_10k = next((s for s in steps if s.rate == 10_000), None)
    if at_10k is not None:
        p99 = at_10k.percentile(0.99)
        verdict = "reached" if at_10k.holds and p99 <= 1.0 else "not reached"
        print(f"aim: p99 <= 1 s at 10,000 trades/s: {verdict} (p99 {p99:.2f} s)")
    last = steps[-1] if steps else None
    if last is not None and not last.holds:
        busiest = max(last.cpu, key=lambda n: last.cpu[n] if not math.isnan(last.cpu[n]) else -1)
        why = "the exchange could not emit the rate" if not last.emitted_ok else "it did not hold"
        print(
            f"stopped at {last.rate:,}/s: {why}; the busiest process then was {busiest} "
            f"({last.cpu[busiest]:.0%} of a core)"
        )
        p99 = last.percentile(0.99)
        if (
            not last.emitted_ok
            and last.emitted
            and last.visible == last.emitted
            and p99 <= HOLD_P99_S
        ):
            # The bench's limit, not the pipeline's: say what the pipeline did keep up with.
            print(
                f"  at that step every trade emitted became visible: "
                f"{last.emitted / last.seconds:,.0f}/s, p99 {p99:.2f} s"
            )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="1000,5000,10000,20000,40000")
    parser.add_argument("--step-s", type=float, default=30.0)
    parser.add_argument("--grace-s", type=float, default=5.0)
    parser.add_argument("--engine", choices=list(benchlib.ENGINES), default="tansu")
    args = parser.parse_args(argv)
    rates = [int(r) for r in args.rates.split(",")]
    with (
        benchlib.kafka_bootstrap(args.engine) as (bootstrap, broker_pid),
        tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp,
        CoinbaseExchange(PRODUCTS, clock=lambda: datetime.now(UTC)) as exchange,
    ):
        print(benchlib.engine_banner(args.engine, bootstrap), flush=True)
        pipeline = Pipeline(Path(tmp), bootstrap, subprocess.Popen, exchange, staging="")
        visibility = None
        try:
            sink = pipeline.start_sink("--admin-port", "0")
            source = pipeline.start_source("--admin-port", "0")
            sink_port = admin_port(Path(tmp) / "sink-1.log")
            source_port = admin_port(Path(tmp) / "source-1.log")
            visibility = Visibility(sink_port, f"{pipeline.source}_matches")
            drain(pipeline, visibility)
            pids = {
                "source": source.pid,
                "sink": sink.pid,
                "broker": broker_pid,
                "bench": os.getpid(),
            }
            steps: list[Step] = []
            for rate in rates:
                print(
                    f"  step {rate:,} trades/s for {args.step_s:.0f} s...",
                    file=sys.stderr,
                    flush=True,
                )
                step = run_step(
                    pipeline, visibility, rate, args.step_s, args.grace_s, pids, source_port
                )
                steps.append(step)
                print(
                    f"    p99 {step.percentile(0.99):.2f} s, written {step.visible:,} of "
                    f"{step.emitted:,}",
                    file=sys.stderr,
                    flush=True,
                )
                if not step.holds:
                    break
                drain(pipeline, visibility)
            report(steps, args.engine, args.step_s)
        finally:
            if visibility is not None:
                visibility.close()
            pipeline.stop_all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
