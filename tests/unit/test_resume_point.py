"""Where a source resumes: the newest checkpoint whose whole write is in the warehouse."""

from __future__ import annotations

from staging.checkpoints import partition_entry, resume_point

T1, T2, T3 = (
    "2026-11-22T03:00:01.000000Z",
    "2026-11-22T03:00:02.000000Z",
    "2026-11-22T03:00:03.000000Z",
)


def test_nothing_saved_means_no_resume_point() -> None:
    """Without entries a source starts from its own default."""
    assert resume_point({}) is None


def test_a_write_is_complete_when_every_touched_partition_has_caught_up() -> None:
    """The newest write whose partitions all have an entry at least as new wins."""
    entries = {
        0: partition_entry({"id": 2}, T2, (0, 1)),
        1: partition_entry({"id": 1}, T1, (1, 2)),
        2: partition_entry({"id": 1}, T1, (1, 2)),
    }
    # Write 2 touched partitions 0 and 1, but partition 1 has only written write 1.
    assert resume_point(entries) == {"id": 1}
    entries[1] = partition_entry({"id": 2}, T2, (0, 1))
    assert resume_point(entries) == {"id": 2}


def test_a_partition_with_no_entry_holds_back_writes_that_touched_it() -> None:
    """A write that touched a partition no sink has reported on is not complete."""
    entries = {0: partition_entry({"id": 3}, T3, (0, 2))}
    assert resume_point(entries) is None


def test_untouched_partitions_do_not_hold_anything_back() -> None:
    """Partitions a write never touched (no keys there) do not matter for it."""
    entries = {1: partition_entry({"id": 3}, T3, (1,)), 0: partition_entry({"id": 1}, T1, (0,))}
    assert resume_point(entries) == {"id": 3}
