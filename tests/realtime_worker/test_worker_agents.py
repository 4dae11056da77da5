"""The worker serves each call as its record's agent: the right session, an agent it does not
know ends the call audibly, a transferred call is not served, a call back from a failed
transfer is told so."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import pytest
from fakeredis.aioredis import FakeRedis

from services.realtime_worker.transfer_tool import RETURN_CUE
from shared.agents import Agent, Agents
from shared.keys import CallField, CallState
from shared.messages import (
    ENTRY_FIELD,
    CallAnswered,
    CallDispatch,
    Hangup,
    StreamStarted,
    decode,
    encode,
)
from shared.records import load_call
from tests.support.fake_redis import polling_client
from tests.support.waiting import eventually
from tests.support.worker_process import KEYS, Sockets, start_worker, stop_worker

pytestmark = pytest.mark.anyio

AGENTS = Agents(
    (
        Agent("support", ("+15005550006",), instructions="Support for {caller}.", voice="cedar"),
        Agent(
            "sales",
            ("*",),
            instructions="Sales.",
            voice="sage",
            greeting="Hello, sales here!",
        ),
    ),
    "agents.yaml",
)


@pytest.fixture
async def redis() -> AsyncIterator[FakeRedis]:
    client = polling_client(fakeredis.FakeServer())
    yield client
    await client.aclose()


async def _call(redis: FakeRedis, sid: str, agent: str, state: CallState, reason: str) -> None:
    fields: dict[str, str | int] = {
        CallField.STATE: state,
        CallField.FROM: "+15005550001",
        CallField.TO: "+15005550006",
        CallField.AGENT: agent,
        CallField.CREATED_MS: 1,
    }
    await redis.hset(KEYS.call(sid), mapping={str(k): v for k, v in fields.items()})
    await redis.xadd(KEYS.dispatch, {ENTRY_FIELD: encode(CallDispatch(sid, reason, 0.0))})


async def test_each_call_gets_the_session_of_its_records_agent(
    redis: FakeRedis, sockets: Sockets
) -> None:
    await _call(redis, "CA1", "support", CallState.DISPATCHED, "new")
    running = await start_worker(redis, sockets, agents_file=AGENTS)
    await eventually(lambda: len(sockets) == 1 and len(sockets[0].sent) >= 1)
    session = sockets[0].sent[0]["session"]
    assert session["instructions"] == "Support for +15005550001."
    assert session["audio"]["output"]["voice"] == "cedar"
    registry = running.worker.registry
    count = registry.get_sample_value("switchboard_worker_agent_calls_total", {"agent": "support"})
    assert count == 1
    await stop_worker(running)


async def test_an_agent_the_worker_does_not_know_ends_the_call_with_the_failure_message(
    redis: FakeRedis, sockets: Sockets
) -> None:
    await _call(redis, "CA2", "ghost", CallState.DISPATCHED, "new")
    running = await start_worker(redis, sockets, agents_file=AGENTS)

    async def ended() -> bool:
        return await redis.hget(KEYS.call("CA2"), CallField.STATE) == b"ended"

    await eventually(ended)
    record = await load_call(redis, KEYS, "CA2")
    assert record is not None
    assert record.get(CallField.END_REASON) == "unknown_agent"
    # the resume route plays FAILURE_MESSAGE for a record that carries an error
    assert "agent 'ghost'" in (record.get(CallField.ERROR) or "")
    entries: Any = await redis.xrange(KEYS.outbound("CA2"))
    assert decode(entries[0][1][ENTRY_FIELD]) == Hangup("unknown_agent")
    assert sockets == []  # no session was opened for it
    await stop_worker(running)


async def test_a_transferred_call_is_not_served_and_a_returned_one_is_told_why(
    redis: FakeRedis, sockets: Sockets
) -> None:
    await _call(redis, "CA3", "sales", CallState.TRANSFERRED, "lease-lost")
    await _call(redis, "CA4", "sales", CallState.DISPATCHED, CallDispatch.TRANSFER_FAILED)
    running = await start_worker(redis, sockets, agents_file=AGENTS)
    worker = running.worker
    await eventually(lambda: len(sockets) == 1 and len(sockets[0].sent) >= 2)
    assert set(worker.sessions) == {"CA4"}
    update, create = sockets[0].sent[:2]
    assert update["type"] == "session.update"
    # No greeting for a call back from a transfer: the model is asked to say what happened.
    assert create["type"] == "response.create"
    assert create["response"]["instructions"] == f"Sales.\n\n{RETURN_CUE}"
    await stop_worker(running)


async def test_a_detection_verdict_that_came_before_the_worker_is_acted_on(
    redis: FakeRedis, sockets: Sockets
) -> None:
    agents = Agents((Agent("dialer", ("+15005550006",), greeting="Hi!", voicemail="hangup"),))
    await _call(redis, "CA5", "dialer", CallState.QUEUED, "new")
    await redis.hset(KEYS.call("CA5"), CallField.MACHINE_DETECTION, "1")
    inbound = KEYS.inbound("CA5")
    for message in (StreamStarted("MZ5", "edge-1", 0.0), CallAnswered("machine_end_beep", 4000)):
        await redis.xadd(inbound, {ENTRY_FIELD: encode(message)})
    running = await start_worker(redis, sockets, agents_file=agents)

    async def ended() -> bool:
        return await redis.hget(KEYS.call("CA5"), CallField.STATE) == b"ended"

    await eventually(ended)
    record = await load_call(redis, KEYS, "CA5")
    assert record is not None and record.get(CallField.END_REASON) == "no_person"
    # The model was never asked to speak: a machine, and the agent hangs up on machines.
    assert [e["type"] for e in sockets[0].sent] == ["session.update"]
    await stop_worker(running)
