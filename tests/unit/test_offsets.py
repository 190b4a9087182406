"""Offset bookkeeping: ranges per partition, next offsets, and the commit ledger."""

from __future__ import annotations

import pytest

from staging.offsets import CommitLedger, OffsetRange, Partition, next_offsets, offset_ranges


def test_ranges_collapse_positions_per_partition_in_first_seen_order() -> None:
    """Positions become one (first, last) range per partition."""
    ranges = offset_ranges([("t", 1, 5), ("t", 0, 9), ("t", 1, 6), ("t", 1, 8), ("u", 0, 0)])
    assert ranges == (
        OffsetRange("t", 1, 5, 8),
        OffsetRange("t", 0, 9, 9),
        OffsetRange("u", 0, 0, 0),
    )


def test_offsets_must_increase_within_a_partition() -> None:
    """A repeated or earlier offset in one partition is a bookkeeping bug."""
    with pytest.raises(ValueError, match=r"t\[0\]: offset 3 does not follow 3"):
        offset_ranges([("t", 0, 3), ("t", 0, 3)])


def test_next_offset_is_last_plus_one() -> None:
    """Committing a range commits the offset after its last record."""
    assert next_offsets([OffsetRange("t", 0, 10, 19), OffsetRange("t", 0, 20, 24)]) == {
        Partition("t", 0): 25
    }


def test_dedup_token_is_deterministic() -> None:
    """The same range always gives the same insert-deduplication token (it is built from the
    range alone), and ranges that differ in anything give different tokens."""
    assert OffsetRange("t", 2, 10, 19).dedup_token() == "t:2:10-19"
    others = [
        OffsetRange("u", 2, 10, 19),
        OffsetRange("t", 3, 10, 19),
        OffsetRange("t", 2, 11, 19),
        OffsetRange("t", 2, 10, 20),
        OffsetRange("t", 21, 0, 19),  # "t:2:10-19" must not be spelled by other numbers
    ]
    tokens = {r.dedup_token() for r in others}
    assert len(tokens) == len(others) and "t:2:10-19" not in tokens


def test_ledger_commits_only_owned_partitions() -> None:
    """Partitions that were revoked or lost are left out of a commit plan."""
    ledger = CommitLedger()
    ledger.assign([Partition("t", 0), Partition("t", 1)])
    ledger.release([Partition("t", 1)])
    plan = ledger.plan([OffsetRange("t", 0, 0, 4), OffsetRange("t", 1, 0, 4)])
    assert plan == {Partition("t", 0): 5}


def test_ledger_never_moves_backwards() -> None:
    """An older batch committed after a newer one does not rewind the offset."""
    ledger = CommitLedger()
    ledger.assign([Partition("t", 0)])
    ledger.record({Partition("t", 0): 50})
    assert ledger.plan([OffsetRange("t", 0, 10, 19)]) == {}
    assert ledger.plan([OffsetRange("t", 0, 50, 59)]) == {Partition("t", 0): 60}
