from __future__ import annotations

from services.edge.lease_watch import MISSING_CHECKS, Action, LeaseView

TIMEOUT_S = 10.0
W1, W2 = "worker-1", "worker-2"


def test_a_served_call_is_redispatched_once_after_its_lease_stays_missing() -> None:
    view = LeaseView(waiting_since=0.0)
    assert view.observe(W1, 1.0, TIMEOUT_S) is Action.SERVED  # the dispatch wait ends
    assert view.observe(W1, 1.5, TIMEOUT_S) is Action.NONE
    actions = [view.observe(None, 2.0 + i, TIMEOUT_S) for i in range(MISSING_CHECKS + 3)]
    assert actions.count(Action.REDISPATCH) == 1
    assert actions[MISSING_CHECKS - 1] is Action.REDISPATCH
    assert Action.GIVE_UP not in actions  # the dispatch wait starts again at the re-dispatch


def test_a_lease_missing_for_a_moment_is_not_a_dead_worker() -> None:
    view = LeaseView(waiting_since=0.0)
    view.observe(W1, 1.0, TIMEOUT_S)
    for i in range(10):  # one miss, then back: a worker re-acquiring after a Redis restart
        assert view.observe(W1 if i % 2 else None, 2.0 + i, TIMEOUT_S) in (
            Action.NONE,
            Action.SERVED,
        )


def test_no_worker_within_the_dispatch_timeout_gives_up() -> None:
    view = LeaseView(waiting_since=100.0)
    assert view.observe(None, 100.0 + TIMEOUT_S - 0.1, TIMEOUT_S) is Action.NONE
    assert view.observe(None, 100.0 + TIMEOUT_S, TIMEOUT_S) is Action.GIVE_UP


def test_after_a_redispatch_the_timeout_counts_from_the_redispatch() -> None:
    view = LeaseView(waiting_since=0.0)
    view.observe(W1, 1.0, TIMEOUT_S)
    now = 50.0
    for _ in range(MISSING_CHECKS):
        action = view.observe(None, now, TIMEOUT_S)
    assert action is Action.REDISPATCH
    assert view.observe(None, now + TIMEOUT_S - 1, TIMEOUT_S) is Action.NONE
    assert view.observe(None, now + TIMEOUT_S, TIMEOUT_S) is Action.GIVE_UP


def test_a_call_whose_worker_is_gone_is_redispatched_at_once_when_revoked() -> None:
    view = LeaseView(waiting_since=0.0)
    view.observe(W1, 1.0, TIMEOUT_S)
    assert view.holder == W1
    assert view.worker_gone(W1, True, 1.3) is Action.REDISPATCH
    assert not view.served and view.waiting_since == 1.3
    assert view.holder is None
    assert view.worker_gone(W1, True, 1.6) is Action.NONE  # once
    # The revoked lease reads as missing: the call waits for its next worker...
    assert view.observe(None, 1.8, TIMEOUT_S) is Action.NONE
    assert view.observe(W2, 2.0, TIMEOUT_S) is Action.SERVED  # ...and the wait ends
    assert view.observe(None, 1.3 + TIMEOUT_S, TIMEOUT_S) is Action.NONE  # served: no give-up


def test_a_gone_worker_that_no_longer_holds_the_lease_changes_nothing_but_the_holder() -> None:
    view = LeaseView(waiting_since=0.0)
    view.observe(W1, 1.0, TIMEOUT_S)
    assert view.worker_gone(W1, False, 1.3) is Action.NONE  # it let go, or another took over
    assert view.served and view.holder is None  # the next lease check says who holds it
    assert view.observe(W2, 1.5, TIMEOUT_S) is Action.NONE
    assert view.holder == W2


def test_a_report_about_a_previous_holder_is_ignored() -> None:
    view = LeaseView(waiting_since=0.0)
    view.observe(W1, 1.0, TIMEOUT_S)
    view.observe(W2, 1.5, TIMEOUT_S)  # another worker has the call now
    assert view.worker_gone(W1, True, 1.6) is Action.NONE
    assert view.served and view.holder == W2
