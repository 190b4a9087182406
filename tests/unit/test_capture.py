"""Capture files: the format, its refusals (with the line), and the recorder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from foundation.clock import ManualClock
from foundation.errors import CaptureError
from source_workers.capture import CaptureFile, CaptureRecorder, ReplaySpec, recorded_settings
from source_workers.connectors.coinbase.pipeline import CONNECTOR
from source_workers.connectors.coinbase.settings import CoinbaseSettings
from source_workers.replay_feed import sample_capture

HEADER = json.dumps({"capture": 1, "connector": "coinbase", "settings": {"products": ["A-B"]}})


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_recorder_writes_what_the_file_reads_back(tmp_path: Path) -> None:
    clock = ManualClock(start_s=10.0)
    path = tmp_path / "rec.jsonl"
    recorder = CaptureRecorder(path, "coinbase", {"products": ["BTC-USD"]}, clock=clock)
    recorder.record('{"type": "match"}')
    clock.advance(0.5)
    recorder.record(b"\x00\xffbinary")
    clock.advance(1.75)
    recorder.record("ünïcode")
    recorder.close()
    capture = CaptureFile(path)
    assert capture.header.connector == "coinbase"
    assert capture.header.settings == {"products": ["BTC-USD"]}
    frames = list(capture.frames())
    assert [(f.at_s, f.data) for f in frames] == [
        (0.0, '{"type": "match"}'),
        (0.5, b"\x00\xffbinary"),
        (2.25, "ünïcode"),
    ]
    assert capture.check() == 3


def test_recorder_refuses_to_overwrite(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER)
    with pytest.raises(CaptureError, match="already exists"):
        CaptureRecorder(path, "coinbase", {})
    assert path.read_text() == HEADER + "\n"


@pytest.mark.parametrize(
    ("lines", "where", "why"),
    [
        (["not json"], "line 1", "header is not JSON"),
        ([json.dumps({"capture": 2, "connector": "x"})], "line 1", '"capture": 1'),
        ([json.dumps({"capture": 1})], "line 1", "connector"),
        ([HEADER, '{"t": 0, "text": "a"}', "{oops"], "line 3", "not JSON"),
        ([HEADER, '{"t": -1, "text": "a"}'], "line 2", '"t"'),
        ([HEADER, '{"t": true, "text": "a"}'], "line 2", '"t"'),
        ([HEADER, '{"t": 0}'], "line 2", '"text"'),
        ([HEADER, '{"t": 0, "bytes": "***"}'], "line 2", "base64"),
        ([HEADER, "[1, 2]"], "line 2", "object"),
    ],
)
def test_bad_captures_name_the_line(tmp_path: Path, lines: list[str], where: str, why: str) -> None:
    path = write(tmp_path, *lines)
    with pytest.raises(CaptureError) as caught:
        CaptureFile(path).check()
    message = str(caught.value)
    assert f"{path} {where}:" in message and why in message
    assert "\n" not in message


def test_missing_capture(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="does not exist"):
        CaptureFile(tmp_path / "nope.jsonl")


def test_header_env_sets_the_kept_settings_only() -> None:
    spec = ReplaySpec(websocket_env="X_WS_URL", keep=("products", "depth"))
    kept = recorded_settings(CoinbaseSettings(products=("BTC-USD", "ETH-USD")), CONNECTOR.replay)
    assert kept == {"products": ["BTC-USD", "ETH-USD"]}
    capture_settings = {"products": ["BTC-USD", "ETH-USD"], "depth": 3, "ws_url": "wss://x"}
    from source_workers.capture import CaptureHeader

    env = CaptureHeader("x", capture_settings).env("X", spec)
    assert env == {"X_PRODUCTS": "BTC-USD,ETH-USD", "X_DEPTH": "3"}


def test_the_shipped_sample_is_a_valid_coinbase_capture() -> None:
    capture = CaptureFile(sample_capture("coinbase"))
    assert capture.header.connector == "coinbase"
    frames = list(capture.frames())
    kinds = [json.loads(f.data)["type"] for f in frames if isinstance(f.data, str)]
    assert kinds[0] == "subscriptions"
    assert kinds.count("match") > 500 and "heartbeat" in kinds
    assert [f.at_s for f in frames] == sorted(f.at_s for f in frames)
