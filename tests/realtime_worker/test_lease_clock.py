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


def test_alive_renewals_keep_the_leases_confirmed_while_the_key_never_lapsed() -> None:
    now = ManualClock(100.0)
    clock = LeaseClock(ttl_s=1.0, clock=now)
    clock.confirm(asked_at=100.0)  # a heartbeat
    for step in range(1, 12):  # an alive SET every 0.25 s, each answered at once
        now.now = 100.0 + step * 0.25
        clock.keep_alive(asked_at=now.now, answered_at=now.now)
        assert clock.valid()  # long past the heartbeat: the alive key vouches for the leases


def test_an_alive_renewal_after_a_lapse_confirms_nothing() -> None:
    now = ManualClock(100.0)
    clock = LeaseClock(ttl_s=1.0, clock=now)
    clock.confirm(asked_at=100.0)
    now.now = 105.0  # frozen: the key lapsed, and the edges may have taken the calls
    clock.keep_alive(asked_at=104.9, answered_at=105.0)
    assert not clock.valid()  # only a lease renewal can tell which calls are still ours
    clock.confirm(asked_at=104.95)
    assert clock.valid()


def test_on_a_cluster_each_slot_groups_alive_key_vouches_for_its_own_calls_only() -> None:
    now = ManualClock(100.0)
    clock = LeaseClock(ttl_s=1.0, clock=now)
    clock.confirm(asked_at=100.0)  # a heartbeat: every group
    for step in range(1, 12):  # g1's key renewed every 0.25 s; g2's primary is down
        now.now = 100.0 + step * 0.25
        clock.keep_alive(asked_at=now.now, answered_at=now.now, group="g1")
    assert clock.valid("g1")
    assert not clock.valid("g2")  # its calls stop speaking: edges may be taking them
    assert not clock.valid()  # nor does a group's key vouch for the whole worker
    clock.keep_alive(asked_at=now.now, answered_at=now.now, group="g2")
    assert not clock.valid("g2")  # back after a lapse: only a lease renewal can tell
    clock.confirm(asked_at=now.now)
    assert clock.valid("g2") and clock.valid()
