from __future__ import annotations

from services.edge.lease_watch import MISSING_CHECKS, Action, LeaseView

TIMEOUT_S = 10.0


def test_a_served_call_is_redispatched_once_after_its_lease_stays_missing() -> None:
    view = LeaseView(waiting_since=0.0)
    assert view.observe(True, 1.0, TIMEOUT_S) is Action.SERVED  # the dispatch wait ends
    assert view.observe(True, 1.5, TIMEOUT_S) is Action.NONE
    actions = [view.observe(False, 2.0 + i, TIMEOUT_S) for i in range(MISSING_CHECKS + 3)]
    assert actions.count(Action.REDISPATCH) == 1
    assert actions[MISSING_CHECKS - 1] is Action.REDISPATCH
    assert Action.GIVE_UP not in actions  # the dispatch wait starts again at the re-dispatch


def test_a_lease_missing_for_a_moment_is_not_a_dead_worker() -> None:
    view = LeaseView(waiting_since=0.0)
    view.observe(True, 1.0, TIMEOUT_S)
    for i in range(10):  # one miss, then back: a worker re-acquiring after a Redis restart
        assert view.observe(i % 2 == 1, 2.0 + i, TIMEOUT_S) in (Action.NONE, Action.SERVED)


def test_no_worker_within_the_dispatch_timeout_gives_up() -> None:
    view = LeaseView(waiting_since=100.0)
    assert view.observe(False, 100.0 + TIMEOUT_S - 0.1, TIMEOUT_S) is Action.NONE
    assert view.observe(False, 100.0 + TIMEOUT_S, TIMEOUT_S) is Action.GIVE_UP


def test_after_a_redispatch_the_timeout_counts_from_the_redispatch() -> None:
    view = LeaseView(waiting_since=0.0)
    view.observe(True, 1.0, TIMEOUT_S)
    now = 50.0
    for _ in range(MISSING_CHECKS):
        action = view.observe(False, now, TIMEOUT_S)
    assert action is Action.REDISPATCH
    assert view.observe(False, now + TIMEOUT_S - 1, TIMEOUT_S) is Action.NONE
    assert view.observe(False, now + TIMEOUT_S, TIMEOUT_S) is Action.GIVE_UP
