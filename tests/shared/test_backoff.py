"""Capped exponential backoff with jitter."""

from __future__ import annotations

import random

from shared.backoff import Backoff


def test_delays_grow_and_are_capped_within_jitter() -> None:
    backoff = Backoff(initial=0.1, maximum=1.0, factor=2.0, rng=random.Random(7))
    nominal = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    for expected in nominal:
        delay = backoff.next_delay()
        assert expected / 2 <= delay <= expected
    assert backoff.attempts == len(nominal)


def test_reset_starts_over() -> None:
    backoff = Backoff(initial=1.0, maximum=100.0, rng=random.Random(1))
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.attempts == 0
    assert 0.5 <= backoff.next_delay() <= 1.0


def test_jitter_spreads_delays() -> None:
    delays = {Backoff(rng=random.Random(seed)).next_delay() for seed in range(20)}
    assert len(delays) > 10


def test_many_attempts_do_not_overflow() -> None:
    backoff = Backoff(initial=0.1, maximum=5.0, rng=random.Random(3))
    backoff.attempts = 2000  # 2.0**2000 overflows a float
    assert 2.5 <= backoff.next_delay() <= 5.0
