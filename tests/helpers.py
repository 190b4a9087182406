"""Shared by the suites: trade rows, resources with unique names, and ``ingest`` run as a
user runs it (a fresh interpreter)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from staging.resource import StagedResource
from staging.schemas import SchemaCatalog

ROOT = Path(__file__).resolve().parents[1]
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


def cli_process(
    *args: str,
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
    timeout_s: float = 60,
) -> subprocess.CompletedProcess[str]:
    """``ingest *args`` as a user runs it, in a fresh interpreter; ``env`` defaults to this
    process's environment without ``INGEST_*`` variables."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    return subprocess.run(
        [sys.executable, "-m", "durable_ingest.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """Exit code 2 and exactly one line on stderr, ``ingest: error: ...``; that line."""
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("ingest: error: ")
    return lines[0]


def trade_keys(capture: Path) -> set[tuple[str, int]]:
    """The (product, trade id) of every Coinbase trade frame in a capture file."""
    from source_workers.capture import CaptureFile

    keys = set()
    for frame in CaptureFile(capture).frames():
        message = json.loads(frame.data)
        if message.get("type") in ("match", "last_match"):
            keys.add((message["product_id"], message["trade_id"]))
    return keys


def python_family(pid: int) -> list[int]:
    """``pid`` and every process below it that runs this Python (not a broker's binary,
    for which SIGUSR1 would be fatal)."""

    def children(of: int) -> list[int]:
        try:
            tasks = Path(f"/proc/{of}/task").iterdir()
            found = [int(c) for t in tasks for c in (t / "children").read_text().split()]
        except OSError:
            return []
        return found + [g for c in found for g in children(c)]

    def runs_python(p: int) -> bool:
        try:
            argv0 = Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            return False
        return os.fsdecode(argv0) == sys.executable

    return [pid, *(c for c in children(pid) if runs_python(c))]


def ask_for_stacks(*pids: int) -> None:
    """Ask each of ``pids`` and the Python processes under it for their threads' stacks (SIGUSR1,
    :func:`foundation.process.dump_stacks_on_sigusr1`): each writes them to its stderr, or
    its log, and goes on. For a failure message about a process that seems stuck."""
    for p in [f for pid in pids for f in python_family(pid)]:
        with contextlib.suppress(OSError):  # gone meanwhile
            os.kill(p, signal.SIGUSR1)
    time.sleep(1)
