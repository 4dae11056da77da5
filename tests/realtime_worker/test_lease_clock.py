from __future__ import annotations

from services.realtime_worker.context import LeaseClock
from tests.support.clock import ManualClock


def test_a_confirmed_lease_is_valid_until_its_ttl_from_the_request() -> None:
    now = ManualClock(100.0)
    clock = LeaseClock(ttl_s=2.0, clock=now)
    clock.confirm(asked_at=100.0)
    now.now = 101.9
    assert clock.valid()
    now.now = 102.0  # e.g. the process was paused: another worker may hold the call now
    assert not clock.valid()
    clock.confirm(asked_at=99.0)  # an answer to an older request confirms nothing newer
    assert not clock.valid()
    clock.confirm(asked_at=101.5)
    assert clock.valid()


def test_without_a_ttl_the_clock_never_silences_a_session() -> None:
    assert LeaseClock().valid()
