"""``ingest source run`` refuses what cannot work in one line, before anything connects:
an undeclared or missing instance name, ``--record`` on an HTTP connector; and source
instances' checkpoint slots stay apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from durable_ingest.cli import main
from foundation.config import settings_from
from foundation.errors import ConfigError
from staging.checkpoints import entries_in, partition_slot, resume_point


def config(tmp_path: Path, instances: str = "") -> Path:
    path = tmp_path / "ingest.toml"
    text = f'data_dir = "{tmp_path}"\n[kafka]\nbootstrap = "127.0.0.1:9"\n'
    text += '[sources.coinbase]\nconnector = "coinbase"\n'
    if instances:
        text += f"instances = {instances}\n"
    path.write_text(text)
    return path


def one_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ingest: error: "), captured.err
    return lines[0]


def test_an_undeclared_instance_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--instance names one of [sources.<s>] instances, or the run stops in one line."""
    line = one_error(
        capsys, "--config", str(config(tmp_path)), "source", "run", "coinbase", "--instance", "btc"
    )
    assert "source coinbase has no instance 'btc' (declared: none)" in line


def test_a_declared_source_needs_its_instance_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With instances declared, a process without --instance would share a chain: refused."""
    path = config(tmp_path, '["btc", "eth"]')
    line = one_error(capsys, "--config", str(path), "source", "run", "coinbase")
    assert "source coinbase runs as instances btc, eth: pass --instance NAME" in line
    line = one_error(
        capsys, "--config", str(path), "source", "run", "coinbase", "--instance", "sol"
    )
    assert "has no instance 'sol' (declared: btc, eth)" in line


@pytest.mark.parametrize("names", [["BTC"], ["a-b"], ["btc", "btc"]])
def test_instance_names_are_checked(names: list[str]) -> None:
    with pytest.raises(ConfigError, match="instance"):
        settings_from({"sources": {"coinbase": {"instances": names}}})


def test_each_instance_resumes_from_its_own_entries() -> None:
    """Entries of instance btc, of eth and without a name are three separate chains."""
    entry = {"checkpoint": {"n": 1}, "write_time": "2026-12-04T00:00:00.000000Z", "partitions": [0]}
    saved = {
        f"coinbase/{partition_slot('matches', 0)}": entry,
        f"coinbase/{partition_slot('matches', 0, 'btc')}": {**entry, "checkpoint": {"n": 2}},
        f"coinbase/{partition_slot('matches', 0, 'eth')}": {**entry, "checkpoint": {"n": 3}},
    }
    assert partition_slot("matches", 0, "btc") == "matches@btc/0"
    assert resume_point(entries_in(saved, "coinbase", "matches")) == {"n": 1}
    assert resume_point(entries_in(saved, "coinbase", "matches", "btc")) == {"n": 2}
    assert resume_point(entries_in(saved, "coinbase", "matches", "eth")) == {"n": 3}
    assert entries_in(saved, "coinbase", "matches", "sol") == {}


def test_record_on_an_http_connector_is_refused_before_writing_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--record captures websocket frames: an HTTP connector would leave a header-only
    capture that ingest dev --replay then refuses."""
    capture = tmp_path / "usgs.jsonl"
    line = one_error(
        capsys, "--config", str(config(tmp_path)), "source", "run", "usgs", "--record", str(capture)
    )
    assert "--record captures websocket frames, and connector usgs polls HTTP" in line
    assert not capture.exists()
