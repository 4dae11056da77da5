from __future__ import annotations

import time

import pytest

from services.realtime_worker.context import LeaseClock


def test_a_confirmed_lease_is_valid_until_its_ttl_from_the_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    clock = LeaseClock(ttl_s=2.0)
    clock.confirm(asked_at=100.0)
    now[0] = 101.9
    assert clock.valid()
    now[0] = 102.0  # e.g. the process was paused: another worker may hold the call now
    assert not clock.valid()
    clock.confirm(asked_at=99.0)  # an answer to an older request confirms nothing newer
    assert not clock.valid()
    clock.confirm(asked_at=101.5)
    assert clock.valid()


def test_without_a_ttl_the_clock_never_silences_a_session() -> None:
    assert LeaseClock().valid()
