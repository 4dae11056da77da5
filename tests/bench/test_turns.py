"""The conversation load's caller script, frame by frame, on a made-up clock."""

from __future__ import annotations

import dataclasses
import random

import pytest

from services.bench.turns import Caller, Phase, TurnShape

FRAME = 0.02
FIXED = TurnShape(
    first_pause_s=(1.0, 1.0),
    speech_s=(2.0, 2.0),
    pause_s=(0.5, 0.5),
    barge_after_s=(1.0, 1.0),
    barge_speech_s=(1.5, 1.5),
    reply_timeout_s=3.0,
)


def _run(caller: Caller, start: float, end: float, playing_until: float = 0.0) -> list[bool]:
    frames, t = [], start
    while t < end - 1e-9:
        frames.append(caller.speech(t, t < playing_until))
        t += FRAME
    return frames


def test_pause_then_a_turn_then_waiting_for_the_reply() -> None:
    caller = Caller(FIXED, random.Random(1), now=0.0)
    assert not any(_run(caller, 0.0, 1.0))
    assert all(_run(caller, 1.0, 3.0))
    assert not any(_run(caller, 3.0, 4.0)) and caller.phase is Phase.AWAIT
    assert caller.turns == 1


def _shape(barge_share: float) -> TurnShape:
    return dataclasses.replace(FIXED, barge_share=barge_share)


def test_a_reply_is_listened_to_the_end_then_the_next_turn_after_a_pause() -> None:
    caller = Caller(_shape(0.0), random.Random(1), now=0.0)
    _run(caller, 0.0, 3.5)
    caller.reply_started(3.5)
    assert caller.phase is Phase.LISTEN and caller.barge_at is None
    assert not any(_run(caller, 3.5, 11.5, playing_until=11.5))  # an 8 s reply
    assert not any(_run(caller, 11.5, 12.0, playing_until=11.5))  # the pause
    assert caller.speech(12.0, False) and caller.turns == 2


def test_a_barge_in_is_speech_while_the_reply_still_plays() -> None:
    caller = Caller(_shape(1.0), random.Random(2), 0.0)
    _run(caller, 0.0, 3.5)
    caller.reply_started(3.5)
    assert caller.barge_at == pytest.approx(4.5)
    assert not any(_run(caller, 3.5, 4.5, playing_until=11.5))
    assert caller.speech(4.5, True) and caller.barge_ins == [4.5]
    assert all(_run(caller, 4.52, 6.0, playing_until=11.5))
    assert caller.turns == 2


def test_no_barge_in_once_the_reply_has_played_out() -> None:
    caller = Caller(_shape(1.0), random.Random(2), 0.0)
    _run(caller, 0.0, 3.5)
    caller.reply_started(3.5)
    _run(caller, 3.5, 4.4, playing_until=4.0)  # a short reply, over before the barge-in
    assert caller.barge_ins == [] and caller.phase is Phase.PAUSE


def test_an_unanswered_turn_is_counted_and_the_caller_speaks_again() -> None:
    caller = Caller(FIXED, random.Random(3), now=0.0)
    _run(caller, 0.0, 6.0)
    assert caller.phase is Phase.AWAIT
    assert caller.speech(6.1, False) and caller.unanswered == 1


def test_the_script_is_the_same_for_the_same_seed_and_spans_are_checked() -> None:
    def frames(seed: int) -> list[bool]:
        return _run(Caller(TurnShape(), random.Random(seed), 0.0), 0.0, 10.0)

    assert frames(7) == frames(7)
    with pytest.raises(ValueError):
        TurnShape(speech_s=(3.0, 1.0))
    with pytest.raises(ValueError):
        TurnShape(barge_share=1.5)
