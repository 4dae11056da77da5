"""The reconnect budget and the labels of a drop (reconnect.py), sans I/O."""

from __future__ import annotations

import random

import pytest

from services.realtime_worker.reconnect import WINDOW_S, CloseInfo, ReconnectBudget, drop_reason
from services.realtime_worker.timing import CallTiming

FIRST_JITTER_S = CallTiming().reconnect_first_jitter_s
BACKOFF_MAX_S = CallTiming().reconnect_backoff_max_s


def test_the_first_reconnect_goes_at_once_later_ones_back_off() -> None:
    budget = ReconnectBudget(5, rng=random.Random(1))
    delays = [budget.next_delay(10.0 + n) for n in range(5)]
    assert all(d is not None for d in delays)
    first, *later = [d for d in delays if d is not None]
    assert 0 <= first <= FIRST_JITTER_S
    assert 0.25 <= later[0] <= 0.5 and 0.5 <= later[1] <= 1.0
    assert all(d <= BACKOFF_MAX_S for d in later)


def test_at_most_limit_reconnects_within_a_minute() -> None:
    budget = ReconnectBudget(3)
    assert all(budget.next_delay(t) is not None for t in (0.0, 1.0, 2.0))
    assert budget.next_delay(3.0) is None
    assert budget.used(3.0) == 3
    # A minute after the first, it has left the window: one more is allowed, backing off as
    # the third within the window.
    delay = budget.next_delay(WINDOW_S + 0.5)
    assert delay is not None and 0.5 <= delay <= 1.0
    assert budget.next_delay(WINDOW_S + 0.6) is None


def test_a_quiet_spell_makes_the_next_reconnect_immediate_again() -> None:
    budget = ReconnectBudget(3)
    budget.next_delay(0.0)
    budget.next_delay(1.0)
    delay = budget.next_delay(200.0)
    assert delay is not None and delay <= FIRST_JITTER_S


def test_zero_allows_none() -> None:
    assert ReconnectBudget(0).next_delay(0.0) is None


@pytest.mark.parametrize(
    ("close", "reason"),
    [
        (CloseInfo(None), "connection_lost"),
        (CloseInfo(1006), "connection_lost"),
        (CloseInfo(1011, "internal error"), "internal_error"),
        (CloseInfo(1001, "Your session hit the maximum duration of 60 minutes."), "going_away"),
        (CloseInfo(1000), "closed_normally"),
        (CloseInfo(4000, "beta_api_shape_disabled"), "closed_other"),
        (CloseInfo(1011, "", after_server_error=True), "server_error"),
    ],
)
def test_drop_reasons_are_a_short_fixed_list(close: CloseInfo, reason: str) -> None:
    assert drop_reason(close) == reason


def test_close_info_describes_itself() -> None:
    assert CloseInfo(None).describe() == "the connection broke without a close frame"
    assert CloseInfo(1011, "boom").describe() == "close 1011 'boom'"
    assert CloseInfo(1000).describe() == "close 1000"
