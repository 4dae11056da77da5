"""Configured tools on a CallSession: the session declares them; the model's calls are POSTed
beside the relays, answered with the body or a clear error, and followed by response.create.

The fake Realtime socket of test_call_session; the tool endpoint is an httpx MockTransport.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import httpx
import pytest

from services.realtime_worker import openai_protocol as rt
from services.realtime_worker.tools import Tool
from shared.messages import CallStopped
from tests.support.realtime import FakeRealtime, Opener
from tests.support.scripted_call import ScriptedCall as Call
from tests.support.scripted_call import running_call, start_session
from tests.support.strict_events import check_client_event
from tests.support.waiting import eventually
from tests.support.worker import SID, Harness

pytestmark = pytest.mark.anyio

TOOL = Tool(
    "lookup_order",
    "Find an order by its number.",
    {"type": "object", "properties": {"order": {"type": "string"}}},
    "http://tools.internal/lookup",
    timeout_s=1.0,
)
Handler = Callable[[httpx.Request], Any]


class Endpoint:
    """The tool's HTTP endpoint; ``respond`` decides each answer."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.respond: Handler = lambda request: httpx.Response(200, text="order 42: shipped")

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(json.loads(request.content))
        answer = self.respond(request)
        if asyncio.iscoroutine(answer):
            answer = await answer
        assert isinstance(answer, httpx.Response)
        return answer


@pytest.fixture
async def endpoint() -> Endpoint:
    return Endpoint()


@pytest.fixture
async def call(
    harness: Harness, endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Call]:
    client = httpx.AsyncClient(transport=httpx.MockTransport(endpoint))
    monkeypatch.setattr(
        harness, "ctx", dataclasses.replace(harness.ctx, tools=(TOOL,), http=client)
    )
    async with running_call(harness) as running:
        yield running
    await client.aclose()


def _tool_call(call_id: str, arguments: str = '{"order": "42"}') -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": f"item_{call_id}",
        "call_id": call_id,
        "name": TOOL.name,
        "arguments": arguments,
        "status": "completed",
    }


async def _answer(call: Call, call_id: str) -> str:
    await eventually(lambda: len(call.sent("response.create")) == 1)
    (answer,) = call.sent("conversation.item.create")
    assert answer["item"] == {
        "type": "function_call_output",
        "call_id": call_id,
        "output": answer["item"]["output"],
    }
    output: str = answer["item"]["output"]
    return output


async def _hang_up(call: Call) -> None:
    await call.harness.send_inbound(CallStopped("caller_hangup"))
    await call.finish()  # every client event checked strictly


async def test_the_session_declares_end_call_and_the_configured_tools(call: Call) -> None:
    update = call.ws.sent[0]
    assert update["session"]["tools"] == [rt.END_CALL_TOOL, TOOL.definition()]
    check_client_event(update)


async def test_a_tool_call_is_posted_and_its_answer_given_to_the_model(
    call: Call, endpoint: Endpoint
) -> None:
    call.ws.push_event(type="response.created", response={"id": "resp_1"})
    call.done("resp_1", output=[_tool_call("call_1")])
    assert await _answer(call, "call_1") == "order 42: shipped"
    (request,) = endpoint.requests
    assert (request["call_sid"], request["arguments"]) == (SID, {"order": "42"})
    assert request["variables"]["call_sid"] == SID  # the call's variables reach the tool
    # The output came before the request for a response.
    kinds = [e["type"] for e in call.ws.sent]
    assert kinds.index("conversation.item.create") < kinds.index("response.create")
    assert (
        call.harness.metric("switchboard_worker_tool_calls_total", tool=TOOL.name, outcome="ok")
        == 1
    )
    assert call.session.ending is None and call.session.end_reason is None
    await _hang_up(call)


@pytest.mark.parametrize(
    ("respond", "outcome", "says"),
    [
        (lambda r: httpx.Response(500, text="boom"), "http_error", "HTTP 500"),
        (lambda r: (_ for _ in ()).throw(httpx.ReadTimeout("slow")), "timeout", "within 1 s"),
        (lambda r: (_ for _ in ()).throw(httpx.ConnectError("refused")), "unreachable", "reach"),
    ],
)
async def test_a_failing_tool_gives_the_model_an_error_and_the_call_goes_on(
    call: Call,
    endpoint: Endpoint,
    caplog: pytest.LogCaptureFixture,
    respond: Handler,
    outcome: str,
    says: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="switchboard.worker.call")
    endpoint.respond = respond
    call.done("resp_1", output=[_tool_call("call_1")])
    error = json.loads(await _answer(call, "call_1"))["error"]
    assert error.startswith("the tool lookup_order failed:") and says in error
    assert (
        call.harness.metric("switchboard_worker_tool_calls_total", tool=TOOL.name, outcome=outcome)
        == 1
    )
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.call_sid == SID  # type: ignore[attr-defined]
    assert "lookup_order" in warning.getMessage()
    # The call goes on: the next reply is relayed.
    call.reply("resp_2", "item_2", 800, done=True)
    await eventually(lambda: call.session.bytes_from_model == 800)
    assert call.session.end_reason is None
    await _hang_up(call)


async def test_unparseable_arguments_are_not_posted(call: Call, endpoint: Endpoint) -> None:
    call.done("resp_1", output=[_tool_call("call_1", arguments="{oops")])
    assert "invalid arguments" in json.loads(await _answer(call, "call_1"))["error"]
    assert endpoint.requests == []
    assert (
        call.harness.metric(
            "switchboard_worker_tool_calls_total", tool=TOOL.name, outcome="bad_arguments"
        )
        == 1
    )
    await _hang_up(call)


async def test_a_slow_tool_never_blocks_audio_and_waits_for_the_reply_in_progress(
    call: Call, endpoint: Endpoint
) -> None:
    release = asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return httpx.Response(200, text="done")

    endpoint.respond = slow
    call.done("resp_1", output=[_tool_call("call_1")])
    await eventually(lambda: len(endpoint.requests) == 1)
    # While the tool works, the model speaks (the caller asked something else): relayed.
    call.reply("resp_2", "item_2", 800, 800)
    await eventually(lambda: call.session.bytes_from_model == 1600)
    release.set()
    await eventually(lambda: len(call.sent("conversation.item.create")) == 1)
    # More of resp_2, handled: the loop has run the tool's task since, and it still waits.
    call.audio("resp_2", "item_2", 160)
    await call.ws.handled()
    assert call.session.bytes_from_model == 1760
    assert call.sent("response.create") == []  # not while resp_2 is under way
    call.done("resp_2")
    await eventually(lambda: len(call.sent("response.create")) == 1)
    await _hang_up(call)


async def test_a_pending_tool_call_is_cancelled_when_the_call_ends(
    call: Call, endpoint: Endpoint
) -> None:
    cancelled = asyncio.Event()

    async def never(request: httpx.Request) -> httpx.Response:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return httpx.Response(200)

    endpoint.respond = never
    call.done("resp_1", output=[_tool_call("call_1")])
    await eventually(lambda: len(endpoint.requests) == 1)
    await _hang_up(call)
    await asyncio.wait_for(cancelled.wait(), 2.0)
    assert call.sent("conversation.item.create") == []


async def test_an_answer_after_a_reconnect_recreates_the_call_in_the_new_session(
    harness: Harness, endpoint: Endpoint
) -> None:
    # The real server refuses an output for a call_id its conversation lacks
    # (invalid_tool_call_id): a session that replaced the one the model called from has none.
    release = asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return httpx.Response(200, text="order 42: shipped")

    endpoint.respond = slow
    client = httpx.AsyncClient(transport=httpx.MockTransport(endpoint))
    harness.ctx = dataclasses.replace(harness.ctx, tools=(TOOL,), http=client)
    first, second = FakeRealtime(), FakeRealtime()
    session, task = await start_session(harness, Opener(first, second))
    first.push_event(type="response.created", response={"id": "resp_1"})
    first.push_event(
        type="response.done",
        response={"id": "resp_1", "status": "completed", "output": [_tool_call("call_1")]},
    )
    await eventually(lambda: endpoint.requests != [])  # the tool is running
    first.drop(1011, "internal error")
    await eventually(lambda: cast(object, session.holder.current.ws) is second)
    release.set()
    await eventually(lambda: any(e["type"] == "response.create" for e in second.sent))
    created = [e["item"] for e in second.sent if e["type"] == "conversation.item.create"]
    assert created == [
        rt.function_call_item("call_1", TOOL.name, '{"order": "42"}'),
        rt.function_call_output_item("call_1", "order 42: shipped"),
    ]
    kinds = [e["type"] for e in second.sent]
    assert kinds.index("conversation.item.create") < kinds.index("response.create")
    for event in second.sent:
        check_client_event(event)
    assert not any(e["type"] == "conversation.item.create" for e in first.sent)
    session.stop("test over")
    await asyncio.wait_for(task, 3.0)
    await client.aclose()
