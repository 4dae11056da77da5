"""An outbound call with machine detection, on a CallSession: the model hears nothing and says
nothing until Twilio says who answered; then a person is greeted, a machine gets the agent's
voicemail policy (the message heard to its last byte, or a hang-up without a word), a fax or
an undecided line the agent's ``fax_or_unknown``.

Driven like test_transfer_call: fakeredis, the scripted fake Realtime socket, the playback
clock set by hand.
"""

from __future__ import annotations

import pytest

from services.realtime_worker.answering import (
    VERDICT_WAIT_S,
    AnswerAction,
    answer_action,
    voicemail_cue,
)
from services.realtime_worker.call_profile import CallParty
from shared.agents import Agent
from shared.keys import CallField, CallState
from shared.messages import CallAnswered, Hangup, InboundAudio, MarkPlayed
from tests.support.scripted_call import ScriptedCall as Call
from tests.support.scripted_call import running_call
from tests.support.waiting import eventually
from tests.support.worker import SID, Harness

pytestmark = pytest.mark.anyio

PARTY = CallParty(SID, "+15005550006", "+15005550001", "outbound-api", {"name": "Ada"})
MESSAGE = "Hi {name}, this is Acme about your order. Please call us back."


def _agent(**fields: object) -> Agent:
    return Agent("collections", greeting="Hello {name}, this is Acme.", **fields)  # type: ignore[arg-type]


def _audio(call: Call) -> list[dict[str, object]]:
    return call.sent("input_audio_buffer.append")


@pytest.mark.parametrize(
    ("answered_by", "voicemail", "fax_or_unknown", "action"),
    [
        ("human", "message", "hangup", AnswerAction.GREET),
        ("machine_end_beep", "message", "greet", AnswerAction.VOICEMAIL),
        ("machine_end_silence", "hangup", "greet", AnswerAction.HANGUP),
        ("machine_end_other", "message", "greet", AnswerAction.VOICEMAIL),
        ("fax", "message", "hangup", AnswerAction.HANGUP),
        ("unknown", "message", "greet", AnswerAction.GREET),
        ("unknown", "message", "voicemail", AnswerAction.VOICEMAIL),
        ("unknown", "hangup", "voicemail", AnswerAction.HANGUP),
    ],
)
def test_the_agents_policies_decide(
    answered_by: str, voicemail: str, fax_or_unknown: str, action: AnswerAction
) -> None:
    assert answer_action(answered_by, voicemail=voicemail, fax_or_unknown=fax_or_unknown) is action


async def test_a_person_is_greeted_only_once_detection_says_so(harness: Harness) -> None:
    async with running_call(harness, agent=_agent(), party=PARTY, awaiting_answer=True) as call:
        await call.inbound(InboundAudio(b"\x11" * 160, 0, 0.0))  # "Hello?"
        await eventually(lambda: call.sent("session.update"))
        assert call.sent("response.create") == [] and _audio(call) == []
        await call.inbound(CallAnswered("human", 2100))
        await eventually(lambda: len(call.sent("response.create")) == 1)
        instructions = call.sent("response.create")[0]["response"]["instructions"]
        assert 'saying exactly this, and nothing more: "Hello Ada, this is Acme."' in instructions
        # From now on the caller's audio reaches the model.
        await call.inbound(InboundAudio(b"\x22" * 160, 20, 0.0))
        await eventually(lambda: len(_audio(call)) == 1)
    assert (
        harness.metric("switchboard_worker_answered_by_total", answered_by="human", action="greet")
        == 1
    )


async def test_a_machine_gets_the_message_heard_to_its_last_byte_then_the_call_ends(
    harness: Harness,
) -> None:
    agent = _agent(voicemail="message", voicemail_message=MESSAGE)
    async with running_call(harness, agent=agent, party=PARTY, awaiting_answer=True) as call:
        await call.inbound(InboundAudio(b"\x11" * 160, 0, 0.0))  # the machine's greeting
        await call.inbound(CallAnswered("machine_end_beep", 7400))
        await eventually(lambda: len(call.sent("response.create")) == 1)
        instructions = call.sent("response.create")[0]["response"]["instructions"]
        assert voicemail_cue("Hi Ada, this is Acme about your order. Please call us back.") in (
            instructions
        )
        assert _audio(call) == []  # the machine is never heard by the model
        call.reply("resp_vm", "item_vm", 1600, 1600, done=True)
        call.done("resp_vm")
        await call.ws.handled()
        await harness.writer.flush()
        assert call.session.end_reason is None  # not before the message has been heard
        for mark in await call.marks():
            await harness.send_inbound(MarkPlayed(mark))
        await call.finish()
    await harness.writer.flush()
    assert (await harness.outbound())[-1] == Hangup("voicemail")
    record = await harness.record()
    assert record[CallField.STATE] == CallState.ENDED
    assert (record[CallField.END_REASON], record[CallField.ENDED_BY]) == ("voicemail", "machine")


async def test_hangup_on_a_machine_ends_the_call_without_a_word(harness: Harness) -> None:
    async with running_call(
        harness, agent=_agent(voicemail="hangup"), party=PARTY, awaiting_answer=True
    ) as call:
        await call.inbound(CallAnswered("machine_end_silence", 5200))
        await call.finish()
        assert call.sent("response.create") == []
    await harness.writer.flush()
    assert (await harness.outbound())[-1] == Hangup("no_person")
    record = await harness.record()
    assert (record[CallField.END_REASON], record[CallField.ENDED_BY]) == ("no_person", "machine")


async def test_no_verdict_in_time_counts_as_unknown(harness: Harness) -> None:
    async with running_call(
        harness, agent=_agent(fax_or_unknown="greet"), party=PARTY, awaiting_answer=True
    ) as call:
        await eventually(lambda: call.sent("session.update"))
        assert call.sent("response.create") == []
        waited = 0.0
        while waited <= VERDICT_WAIT_S:  # the line stays up: media keeps coming
            call.clock.advance(5.0)
            waited += 5.0
            await call.inbound(InboundAudio(b"\x11" * 160, int(waited * 1000), 0.0))
        await eventually(lambda: len(call.sent("response.create")) == 1)
    assert (
        harness.metric(
            "switchboard_worker_answered_by_total", answered_by="unknown", action="greet"
        )
        == 1
    )


async def test_a_call_without_detection_is_greeted_at_once(harness: Harness) -> None:
    async with running_call(harness, agent=_agent(), party=PARTY) as call:
        await eventually(lambda: len(call.sent("response.create")) == 1)
        await call.inbound(CallAnswered("machine_end_beep", 100))  # ignored: nobody waits
        await call.inbound(InboundAudio(b"\x22" * 160, 0, 0.0))
        await eventually(lambda: len(_audio(call)) == 1)
        assert len(call.sent("response.create")) == 1
