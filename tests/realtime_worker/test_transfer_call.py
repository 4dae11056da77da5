"""Agents and transfers on a CallSession: the agent's session, ``transfer_call`` (cold and
warm), a call back from a transfer that did not go through, and the set-up hook.

Driven like test_conversation: fakeredis and the scripted fake Realtime socket; the playback
clock is set by hand, so "heard to its last byte" is exact.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.realtime_worker.call_profile import CallParty
from services.realtime_worker.call_session import CallSession
from services.realtime_worker.transfer_tool import RETURN_CUE
from shared.agents import Agent
from shared.keys import CallField, CallState
from shared.messages import CallStopped, Hangup, MarkPlayed, StreamStarted
from shared.records import Turn, turn_commands
from tests.support.realtime import FakeRealtime
from tests.support.scripted_call import ScriptedCall as Call
from tests.support.scripted_call import running_call
from tests.support.strict_events import check_client_event
from tests.support.waiting import eventually
from tests.support.worker import SID, Harness

pytestmark = pytest.mark.anyio

SUPPORT = Agent(
    "support",
    numbers=("+15005550006",),
    instructions="You are the support line of {company}. The caller is {caller}.",
    voice="cedar",
    transfer_targets={"billing": "+15005550007", "sales": "sip:sales@pbx.example.com"},
)
WARM = Agent("warm", transfer_targets={"billing": "+15005550007"}, warm_transfer=True)
PARTY = CallParty(SID, caller="+15005550001", called="+15005550006")


@pytest.fixture
async def call(harness: Harness) -> AsyncIterator[Call]:
    async with running_call(harness, agent=SUPPORT, party=PARTY) as running:
        yield running


def _transfer(call_id: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": "item_fc",
        "call_id": call_id,
        "name": "transfer_call",
        "arguments": json.dumps(arguments),
        "status": "completed",
    }


async def _hear_everything(call: Call) -> None:
    """The caller hears every mark sent so far (Twilio echoes them back)."""
    for mark in await call.marks():
        await call.harness.send_inbound(MarkPlayed(mark))


# --- the agent's session ------------------------------------------------------------------------


async def test_the_session_is_the_agents_with_transfer_call_offered(call: Call) -> None:
    await eventually(lambda: call.sent("session.update"))
    session = call.sent("session.update")[0]["session"]
    # {caller} is the call's; {company} is no variable of this call, so it stays as written.
    assert session["instructions"] == (
        "You are the support line of {company}. The caller is +15005550001."
    )
    assert session["audio"]["output"]["voice"] == "cedar"
    tools = {tool["name"]: tool for tool in session["tools"]}
    assert list(tools) == ["end_call", "transfer_call"]
    target = tools["transfer_call"]["parameters"]["properties"]["target"]
    assert target["enum"] == ["billing", "sales"]


async def test_an_agent_without_targets_is_not_offered_transfer_call(harness: Harness) -> None:
    async with running_call(harness, agent=Agent("plain")) as call:
        await eventually(lambda: call.sent("session.update"))
        tools = call.sent("session.update")[0]["session"]["tools"]
        assert [tool["name"] for tool in tools] == ["end_call"]
        call.done("resp_1", output=[_transfer("call_1", {"target": "billing", "summary": "x"})])
        await eventually(lambda: call.sent("conversation.item.create"))
        (answer,) = call.sent("conversation.item.create")
        assert "no function named transfer_call" in answer["item"]["output"]
        assert call.session.ending is None


# --- transfer_call --------------------------------------------------------------------------------


async def test_a_cold_transfer_is_recorded_and_the_call_closes_once_the_handoff_is_heard(
    call: Call,
) -> None:
    h = call.harness
    summary = "Ada Lovelace   wants a refund\nfor order 42."
    call.ws.push_event(type="response.created", response={"id": "resp_fc"})
    call.done("resp_fc", output=[_transfer("call_1", {"target": "billing", "summary": summary})])
    # The tool is answered, and the model is asked for its handoff sentence (no audio came
    # with the call), under the agent's own instructions.
    await eventually(lambda: len(call.sent("response.create")) == 1)
    (answer,) = call.sent("conversation.item.create")
    assert answer["item"]["call_id"] == "call_1"
    assert json.loads(answer["item"]["output"])["ok"] is True
    instructions = call.sent("response.create")[0]["response"]["instructions"]
    assert instructions.startswith("You are the support line of {company}.")
    assert "transferring them to billing now" in instructions
    call.reply("resp_bye", "item_bye", 1600, 800, done=True)
    call.done("resp_bye")
    await call.ws.handled()
    assert call.session.bytes_from_model == 2400
    await h.writer.flush()
    # Not a byte before the handoff has been heard to its last mark.
    assert call.session.end_reason is None
    await _hear_everything(call)
    await call.finish()
    await h.writer.flush()
    assert (await h.outbound())[-1] == Hangup("transfer")
    record = await h.record()
    assert record[CallField.STATE] == CallState.TRANSFERRED
    assert record[CallField.END_REASON] == "transfer"
    assert record[CallField.ENDED_BY] == "transfer"
    assert record[CallField.TRANSFER_TARGET] == "billing"
    assert record[CallField.TRANSFERRED_TO] == "+15005550007"
    assert record[CallField.TRANSFER_SUMMARY] == "Ada Lovelace wants a refund for order 42."
    assert record[CallField.TRANSFER_WARM] == "0"
    assert h.metric("switchboard_worker_transfers_total", agent="support", outcome="cold") == 1


async def test_a_handoff_spoken_with_the_call_is_not_asked_for_again(harness: Harness) -> None:
    async with running_call(harness, agent=WARM) as call:
        call.reply("resp_1", "item_1", 800, done=True)
        call.done("resp_1", output=[_transfer("call_7", {"target": "billing", "summary": "Hi"})])
        await eventually(lambda: call.session.ending is not None)
        assert call.sent("response.create") == []
        await _hear_everything(call)
        await call.finish()
        await harness.writer.flush()
        record = await harness.record()
        assert record[CallField.TRANSFER_WARM] == "1"
        assert record[CallField.STATE] == CallState.TRANSFERRED


async def test_an_unknown_target_is_a_tool_error_and_the_call_goes_on(call: Call) -> None:
    h = call.harness
    call.done("resp_1", output=[_transfer("call_2", {"target": "legal", "summary": "x"})])
    await eventually(lambda: len(call.sent("response.create")) == 1)
    (answer,) = call.sent("conversation.item.create")
    output = json.loads(answer["item"]["output"])["error"]
    assert "no transfer target 'legal'" in output and "billing, sales" in output
    assert call.session.ending is None
    await h.send_inbound(CallStopped("caller_hangup"))
    await call.finish()
    await h.writer.flush()
    record = await h.record()
    assert CallField.TRANSFERRED_TO not in record
    assert record[CallField.ENDED_BY] == "caller"
    assert h.metric("switchboard_worker_transfers_total", agent="support", outcome="refused") == 1


# --- back from a transfer that did not go through -------------------------------------------------


async def test_a_call_back_from_a_failed_transfer_is_seeded_and_the_model_told(
    harness: Harness,
) -> None:
    h = harness
    turns = [
        Turn("user", "I want a refund.", 1),
        Turn("assistant", "Let me connect you to billing.", 2),
        Turn("system", "The transfer to billing did not go through: nobody answered.", 3),
    ]
    for turn in turns:
        for command in turn_commands(h.keys, SID, turn):
            await h.redis.execute_command(*command)  # type: ignore[no-untyped-call]
    async with running_call(harness, agent=SUPPORT, resumed=True) as call:
        await eventually(lambda: call.sent("response.create"))
        seeded = [
            (e["item"]["role"], e["item"]["content"][0]["text"])
            for e in call.sent("conversation.item.create")
        ]
        assert seeded == [(t.role, t.text) for t in turns]
        (create,) = call.sent("response.create")
        assert create["response"]["instructions"].endswith(RETURN_CUE)
        for event in call.ws.sent:
            check_client_event(event)


# --- the set-up hook ----------------------------------------------------------------------------


def _hook(handler: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def _start(harness: Harness, **session: Any) -> tuple[CallSession, asyncio.Task[None]]:
    await harness.send_inbound(StreamStarted("MZ1", "edge-1", 0.0))
    call = CallSession(harness.ctx, SID, "0-0", agent=SUPPORT, party=PARTY, **session)
    return call, asyncio.create_task(call.run())


async def test_the_hook_is_asked_while_the_session_connects_and_its_answer_applied(
    harness: Harness,
) -> None:
    asked: list[dict[str, Any]] = []
    ws = FakeRealtime()
    hook_heard = asyncio.Event()

    async def answer(request: httpx.Request) -> httpx.Response:
        asked.append(json.loads(request.content))
        hook_heard.set()
        return httpx.Response(
            200,
            json={
                "instructions": "Help {name} with account {account}.",
                "greeting": "Hello {name}!",
                "variables": {"name": "Ada", "account": 42},
            },
        )

    async def connect() -> FakeRealtime:
        # The socket opens only once the hook has been asked: were the hook asked after
        # connecting, this call would never get a session.
        await hook_heard.wait()
        return ws

    harness.use(connect)
    harness.configure(call_setup_url="https://hooks.example/setup")
    harness.ctx = dataclasses.replace(harness.ctx, http=_hook(answer))
    session, task = await _start(harness)
    await eventually(lambda: len(ws.sent) >= 2)
    assert asked == [
        {
            "call_sid": SID,
            "from": "+15005550001",
            "to": "+15005550006",
            "direction": "inbound",
            "agent": "support",
        }
    ]
    update, greeting = ws.sent[0], ws.sent[1]
    assert update["session"]["instructions"] == "Help Ada with account 42."
    assert greeting["type"] == "response.create"
    assert (
        'saying exactly this, and nothing more: "Hello Ada!"'
        in (greeting["response"]["instructions"])
    )
    await harness.send_inbound(CallStopped("caller_hangup"))
    await asyncio.wait_for(task, 3.0)
    await harness.writer.flush()
    stored = json.loads((await harness.record())[CallField.SETUP])
    assert stored["variables"] == {"name": "Ada", "account": "42"}
    assert harness.metric("switchboard_worker_call_setup_total", outcome="ok") == 1


async def test_a_slow_hook_costs_at_most_its_timeout_and_the_agent_serves_the_call(
    harness: Harness,
) -> None:
    never = asyncio.Event()

    async def stall(request: httpx.Request) -> httpx.Response:
        await never.wait()
        return httpx.Response(200, json={})

    ws = FakeRealtime()
    harness.use(ws)
    harness.configure(call_setup_url="https://hooks.example/setup", call_setup_timeout_s=0.2)
    harness.ctx = dataclasses.replace(harness.ctx, http=_hook(stall))
    session, task = await _start(harness)
    await eventually(lambda: ws.sent)
    update = ws.sent[0]["session"]
    assert update["instructions"].startswith("You are the support line of {company}.")
    assert harness.metric("switchboard_worker_call_setup_total", outcome="timeout") == 1
    await harness.send_inbound(CallStopped("caller_hangup"))
    await asyncio.wait_for(task, 3.0)
    await harness.writer.flush()
    assert CallField.SETUP not in await harness.record()


async def test_a_taken_over_call_keeps_the_hooks_answer_without_asking_again(
    harness: Harness,
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise AssertionError("the hook must not be asked again")

    ws = FakeRealtime()
    harness.use(ws)
    harness.configure(call_setup_url="https://hooks.example/setup")
    harness.ctx = dataclasses.replace(harness.ctx, http=_hook(fail))
    stored = json.dumps({"instructions": "Help {name}.", "variables": {"name": "Ada"}})
    session, task = await _start(harness, setup=stored, takeover=True)
    await eventually(lambda: ws.sent)
    assert ws.sent[0]["session"]["instructions"] == "Help Ada."
    await harness.send_inbound(CallStopped("caller_hangup"))
    await asyncio.wait_for(task, 3.0)
