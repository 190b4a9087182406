"""The CheckpointStore contract, identical for the in-memory and the Kafka store."""

from __future__ import annotations

import pytest

from foundation.errors import CheckpointError, StagingClosedError
from tests.contract.conftest import Harness
from tests.helpers import unique


def test_load_returns_none_before_any_save(harness: Harness) -> None:
    """A source that never saved a checkpoint starts from nothing."""
    store = harness.checkpoint_store()
    try:
        assert store.load(unique("s"), "matches") is None
    finally:
        store.close()


def test_load_returns_the_newest_save(harness: Harness) -> None:
    """After several saves, load returns the last one, per source and resource."""
    store = harness.checkpoint_store()
    source = unique("s")
    try:
        store.save(source, "matches", {"trade_id": 1})
        store.save(source, "matches", {"trade_id": 2, "sequence": 7})
        store.save(source, "other", {"at": "2026-11-22T00:00:00Z"})
        assert store.load(source, "matches") == {"trade_id": 2, "sequence": 7}
        assert store.load(source, "other") == {"at": "2026-11-22T00:00:00Z"}
    finally:
        store.close()


def test_a_new_store_sees_saved_checkpoints(harness: Harness) -> None:
    """A restarted worker (a new store object) loads what the previous one saved."""
    source = unique("s")
    first = harness.checkpoint_store()
    first.save(source, "matches", {"trade_id": 41})
    first.close()
    second = harness.checkpoint_store()
    try:
        assert second.load(source, "matches") == {"trade_id": 41}
    finally:
        second.close()


def test_checkpoints_must_be_plain_json(harness: Harness) -> None:
    """A checkpoint with NaN is refused rather than stored."""
    store = harness.checkpoint_store()
    try:
        with pytest.raises(CheckpointError):
            store.save(unique("s"), "matches", {"x": float("nan")})
    finally:
        store.close()


def test_a_closed_store_refuses_to_save_or_load(harness: Harness) -> None:
    """After close, a store says it is closed rather than saving nowhere."""
    store = harness.checkpoint_store()
    store.close()
    with pytest.raises(StagingClosedError):
        store.save(unique("s"), "matches", {"trade_id": 1})
    with pytest.raises(StagingClosedError):
        store.load_all()
