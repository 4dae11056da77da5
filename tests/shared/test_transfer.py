"""What a transfer's dial outcome means (shared/transfer.py): is the caller still there, and what
the model is told when the person was not reached."""

from __future__ import annotations

import pytest

from shared.transfer import CALLER_GONE, REACHED, UNREACHED, caller_still_there, failure_notice


@pytest.mark.parametrize("status", ["completed", "busy", "failed", "no-answer", "canceled"])
def test_a_parent_call_that_ended_means_the_caller_is_gone(status: str) -> None:
    assert caller_still_there(status) is False


@pytest.mark.parametrize("status", ["in-progress", "ringing", "queued", ""])
def test_a_parent_call_still_up_or_without_status_means_the_caller_is_there(status: str) -> None:
    assert caller_still_there(status) is True


def test_the_status_sets() -> None:
    assert REACHED == {"completed", "answered"}
    assert UNREACHED == {"busy", "no-answer", "failed", "canceled"}
    assert CALLER_GONE == {"completed", "busy", "failed", "no-answer", "canceled"}
    assert not REACHED & UNREACHED


@pytest.mark.parametrize(
    ("status", "why"),
    [
        ("busy", "the line was busy"),
        ("no-answer", "nobody answered"),
        ("failed", "the call could not be placed"),
        ("canceled", "the call was canceled"),
        ("weird", "the dial ended with status 'weird'"),
        ("", "the dial ended with status ''"),
    ],
)
def test_failure_notice(status: str, why: str) -> None:
    assert failure_notice("billing", status) == (
        f"The transfer to billing did not go through: {why}. The caller is back on the line "
        "with you."
    )


def test_every_unreached_status_has_its_own_words() -> None:
    notices = {failure_notice("sales", status) for status in UNREACHED}
    assert len(notices) == len(UNREACHED)
    assert not any("ended with status" in notice for notice in notices)
