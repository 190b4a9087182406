"""The one backoff schedule: exponential, capped, jittered, never zero, reset after a healthy
connection; reconnects, the stager's retries and the sink's retries take it."""

from __future__ import annotations

from foundation.backoff import Backoff


def test_delays_double_up_to_the_cap() -> None:
    """With jitter at its top the delays are the capped exponential series."""
    backoff = Backoff(initial_s=0.5, max_s=4.0, jitter=lambda: 0.999999)
    delays = [round(backoff.failed(now=float(i)), 3) for i in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_jitter_keeps_at_least_half_the_ceiling() -> None:
    """Full jitter is bounded below, so a storm of failures cannot spin."""
    backoff = Backoff(initial_s=1.0, max_s=10.0, jitter=lambda: 0.0)
    assert backoff.failed(0.0) == 0.5 and backoff.failed(1.0) == 1.0


def test_a_healthy_connection_resets_the_schedule() -> None:
    """A connection that stayed up reset_after_s starts the series again."""
    backoff = Backoff(initial_s=1.0, max_s=60.0, reset_after_s=30.0, jitter=lambda: 0.999999)
    for i in range(4):
        backoff.failed(float(i))
    backoff.connected(100.0)
    assert round(backoff.failed(129.0), 3) == 16.0  # up 29 s: not long enough
    backoff.connected(200.0)
    assert round(backoff.failed(230.0), 3) == 1.0  # up 30 s: reset


def test_a_connection_that_delivered_data_resets_the_schedule() -> None:
    """A feed that drops every 2.5 s but delivers in between is reconnected at the first
    delay every time; one that delivers nothing still backs off."""
    backoff = Backoff(initial_s=0.5, max_s=30.0, reset_after_s=60.0, jitter=lambda: 0.999999)
    delays = []
    now = 0.0
    for _ in range(20):
        backoff.connected(now)
        backoff.delivered()
        now += 2.5
        delays.append(round(backoff.failed(now), 3))
    assert max(delays) <= 0.5
    silent = [round(backoff.failed(now + i), 3) for i in range(1, 5)]  # no delivery
    assert silent == [1.0, 2.0, 4.0, 8.0]  # the series goes on from the reset
    backoff.connected(now + 10)
    assert round(backoff.failed(now + 11), 3) == 16.0  # connected, delivered nothing


def test_a_retry_loop_takes_the_same_series() -> None:
    """next_delay() is the series without a connection to judge: the stager's and the
    sink's retries wait as the reconnects do."""
    backoff = Backoff(initial_s=0.5, max_s=4.0, jitter=lambda: 0.999999)
    assert [round(backoff.next_delay(), 3) for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]


def test_the_sinks_retry_policy_uses_the_schedule_fresh_per_batch() -> None:
    """Each batch starts the series again; jitter keeps at least half of each step."""
    from sink_workers.inserts import RetryPolicy

    policy = RetryPolicy(initial_s=1.0, max_s=4.0, jitter=lambda: 0.0)
    first = policy.delays()
    assert [first() for _ in range(4)] == [0.5, 1.0, 2.0, 2.0]
    assert policy.delays()() == 0.5
