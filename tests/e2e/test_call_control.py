"""Call control through real processes: an agent per number, the set-up hook, and transfers to a
person (cold, warm answered, warm not answered). Call simulator (following <Dial> as Twilio
does, with a stub person) → edge → Redis → worker → realtime simulator, and back."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.call_sim import place_call
from services.devstack import Stack
from services.realtime_worker.transfer_tool import RETURN_CUE
from tests.support.calls import (
    CALLER_AUDIO,
    SILENCE,
    item_audio,
    padded,
    short_reply,
    sim_session,
    wait_for_call_end,
    wait_for_sessions,
)
from tests.support.stack import (
    ADMIN_TOKEN,
    StackFactory,
    call_config,
    call_record,
    metric_value,
    worker_log,
    worker_metrics,
)
from tests.support.tool_server import ToolServer

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

SUPPORT_NUMBER = "+15005550006"
SALES_NUMBER = "+15005550008"
BILLING = "+15005550007"
CALLER = "+15005550009"
SUMMARY = "Ada wants a refund for order 42."
QUIET = SILENCE * (2 * 8000)


def _agents_file(tmp_path: Path, *agents: dict[str, Any]) -> Path:
    path = tmp_path / "agents.yaml"
    path.write_text(yaml.safe_dump({"agents": list(agents)}))
    return path


def _support(**changes: Any) -> dict[str, Any]:
    return {
        "name": "support",
        "numbers": [SUPPORT_NUMBER],
        "instructions": "You are the support line. The caller is {caller}.",
        "voice": "cedar",
        "transfer_targets": {"billing": BILLING},
        **changes,
    }


def _stack(
    make_stack: StackFactory,
    tmp_path: Path,
    agents: Path,
    sim_args: list[str] | None = None,
    worker_env: dict[str, str] | None = None,
) -> Stack:
    return make_stack(
        workers=1,
        edge_env={"ADMIN_TOKEN": ADMIN_TOKEN, "AGENTS_FILE": str(agents)},
        worker_env={"AGENTS_FILE": str(agents), **(worker_env or {})},
        sim_args=[*short_reply(tmp_path), *(sim_args or [])],
    )


def _transferring(make_stack: StackFactory, tmp_path: Path, warm: bool) -> Stack:
    """A stack whose model transfers the caller to billing after their first turn."""
    arguments = json.dumps({"target": "billing", "summary": SUMMARY})
    agents = _agents_file(tmp_path, _support(warm_transfer=warm))
    return _stack(
        make_stack,
        tmp_path,
        agents,
        sim_args=["--call-tool", "transfer_call", "--tool-arguments", arguments],
    )


# --- an agent per number -----------------------------------------------------------------------


async def test_each_number_gets_its_own_agent_and_an_unknown_number_is_rejected(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    agents = _agents_file(
        tmp_path,
        _support(),
        {"name": "sales", "numbers": [SALES_NUMBER], "instructions": "You sell.", "voice": "sage"},
    )
    stack = _stack(make_stack, tmp_path, agents)
    support, sales, unknown = await asyncio.gather(
        place_call(call_config(stack, CALLER_AUDIO, to_number=SUPPORT_NUMBER, from_number=CALLER)),
        place_call(call_config(stack, CALLER_AUDIO, to_number=SALES_NUMBER, from_number=CALLER)),
        place_call(call_config(stack, CALLER_AUDIO, to_number="+15005550010")),
    )

    assert support.problems() == [] and sales.problems() == []
    sessions = {s["voice"]: s for s in wait_for_sessions(stack, 2)}
    assert sorted(sessions) == ["cedar", "sage"]
    assert sessions["cedar"]["instructions"] == f"You are the support line. The caller is {CALLER}."
    assert sessions["cedar"]["tool_names"] == ["end_call", "transfer_call"]
    assert sessions["sage"]["instructions"] == "You sell."
    assert sessions["sage"]["tool_names"] == ["end_call"]
    assert wait_for_call_end(stack, support.call_sid)["call"]["agent"] == "support"
    assert wait_for_call_end(stack, sales.call_sid)["call"]["agent"] == "sales"
    # No agent answers that number and none has "*": Twilio is told to reject the call.
    assert "<Reject" in unknown.twiml[-1]
    assert unknown.streams == []
    assert call_record(stack, unknown.call_sid) == {}


# --- transfers ---------------------------------------------------------------------------------


async def test_a_cold_transfer_plays_the_handoff_to_its_last_byte_then_dials_the_person(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    stack = _transferring(make_stack, tmp_path, warm=False)
    config = call_config(
        stack, CALLER_AUDIO, hold_s=20.0, to_number=SUPPORT_NUMBER, from_number=CALLER
    )
    report = await place_call(config)

    assert report.problems() == []
    session = sim_session(stack)
    assert session["function_calls"] == ["transfer_call"]
    assert session["invalid_events"] == [] and session["errors"] == []
    (handoff,) = item_audio(session).values()
    # The handoff sentence was heard to its last byte, then the stream closed and Twilio was
    # told to dial billing with the caller's number: no whisper on a cold transfer.
    assert report.heard_audio == padded(handoff)
    assert "transferring them to billing" in session["response_instructions"][-1]
    assert report.redirects[-1].endswith("/twilio/voice/resume")
    (dial,) = report.dials
    assert (dial.noun, dial.address, dial.caller_id) == ("number", BILLING, CALLER)
    assert dial.whisper_url is None and dial.whisper == []
    assert dial.dial_call_status == "completed"
    assert dial.action_answer == ["Hangup"]

    record = call_record(stack, report.call_sid)
    assert record["state"] == "ended"
    assert record["ended_by"] == "transfer"
    assert record["transfer_target"] == "billing"
    assert record["transferred_to"] == BILLING
    assert record["transfer_summary"] == SUMMARY
    assert record["transfer_status"] == "completed"
    assert record["agent"] == "support"


async def test_a_warm_transfer_reads_the_summary_to_the_person_first(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    stack = _transferring(make_stack, tmp_path, warm=True)
    config = call_config(
        stack, CALLER_AUDIO, hold_s=20.0, to_number=SUPPORT_NUMBER, from_number=CALLER
    )
    report = await place_call(config)

    assert report.problems() == []
    (dial,) = report.dials
    assert dial.whisper_url is not None and f"call={report.call_sid}" in dial.whisper_url
    assert dial.whisper == [f"Transferred call from the assistant. {SUMMARY}"]
    assert dial.dial_call_status == "completed" and dial.bridged
    assert call_record(stack, report.call_sid)["transfer_warm"] == "1"


async def test_an_unanswered_warm_transfer_brings_the_caller_back_to_the_ai(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    stack = _transferring(make_stack, tmp_path, warm=True)
    # The hold covers the handoff, the 1 s ring and the return to a new stream, until the
    # model's next reply starts; the caller then stays on the line while it plays.
    config = call_config(
        stack,
        CALLER_AUDIO,
        hold_s=10.0,
        to_number=SUPPORT_NUMBER,
        from_number=CALLER,
        callee="no-answer",
    )
    report = await place_call(config)

    assert report.problems() == []
    (dial,) = report.dials
    assert dial.dial_call_status == "no-answer" and dial.whisper == []
    assert len(report.streams) == 2  # the first stream, and the one after the failed dial
    first, second = wait_for_sessions(stack, 2)
    # The new session holds the conversation so far, the note about the transfer last.
    roles = [item["role"] for item in second["text_items"]]
    assert roles[-1] == "system" and "user" in roles and "assistant" in roles
    assert second["text_items"][-1]["text"].startswith(
        "The transfer to billing did not go through: nobody answered."
    )
    assert second["response_instructions"][0].endswith(RETURN_CUE)
    # On the second stream the caller heard the model say so, to its last byte.
    (told,) = item_audio(second).values()
    assert report.streams[1].heard == padded(told)
    (handoff,) = item_audio(first).values()
    assert report.streams[0].heard == padded(handoff)

    record = wait_for_call_end(stack, report.call_sid)["call"]
    assert record["transfer_status"] == "no-answer"
    assert record["ended_by"] == "caller"


# --- the set-up hook ---------------------------------------------------------------------------


async def test_the_set_up_hook_fills_in_the_call_and_a_slow_one_costs_only_its_timeout(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    answer = {
        "instructions": "Help {name} with account {account}.",
        "greeting": "Hello {name}, support here.",
        "variables": {"name": "Ada", "account": "42"},
    }
    agents = _agents_file(tmp_path, _support(greeting="Hello from support!"))
    with ToolServer(json_answer=answer) as hook:
        fast = _stack(
            make_stack,
            tmp_path,
            agents,
            # Generous: the hook answers at once, but a busy 2-core machine may take a while.
            worker_env={"CALL_SETUP_URL": hook.url + "/ok", "CALL_SETUP_TIMEOUT": "3"},
        )
        # The caller listens (2 s of silence): the first audio is the greeting, in full.
        report = await place_call(
            call_config(fast, QUIET, to_number=SUPPORT_NUMBER, from_number=CALLER)
        )
        slow = _stack(
            make_stack,
            tmp_path,
            agents,
            worker_env={"CALL_SETUP_URL": hook.url + "/slow", "CALL_SETUP_TIMEOUT": "0.5"},
        )
        late = await place_call(
            call_config(slow, QUIET, to_number=SUPPORT_NUMBER, from_number=CALLER)
        )

    assert report.problems() == [] and late.problems() == []
    ok_request = next(body for path, body in hook.requests if path == "/ok")
    assert ok_request == {
        "call_sid": report.call_sid,
        "from": CALLER,
        "to": SUPPORT_NUMBER,
        "direction": "inbound",
        "agent": "support",
    }
    assert sim_session(fast)["instructions"] == "Help Ada with account 42."
    assert '"Hello Ada, support here."' in sim_session(fast)["response_instructions"][0]
    # The slow hook was given up after its 0.5 s: the agent's own instructions and greeting,
    # and the call connected, its greeting heard.
    assert sim_session(slow)["instructions"] == f"You are the support line. The caller is {CALLER}."
    assert '"Hello from support!"' in sim_session(slow)["response_instructions"][0]
    assert "set-up hook: no answer within 0.5 s" in worker_log(slow)
    metric = "switchboard_worker_call_setup_total"
    assert metric_value(worker_metrics(slow), metric, outcome="timeout") == 1
    assert metric_value(worker_metrics(fast), metric, outcome="ok") == 1
    assert report.timings.first_audio_ms is not None and late.timings.first_audio_ms is not None
    delay_ms = late.timings.first_audio_ms - report.timings.first_audio_ms
    print(
        f"first audio: {report.timings.first_audio_ms:.0f} ms with a prompt hook, "
        f"{late.timings.first_audio_ms:.0f} ms with a hook that never answers (+{delay_ms:.0f})"
    )
    assert late.timings.first_audio_ms < report.timings.first_audio_ms + 500 + 2500
    # Both callers heard the whole greeting.
    for call, stack in ((report, fast), (late, slow)):
        (greeting,) = item_audio(sim_session(stack)).values()
        assert call.heard_audio == padded(greeting)


# --- a bad agents file -------------------------------------------------------------------------


@pytest.mark.parametrize("module", ["services.edge", "services.realtime_worker"])
def test_a_bad_agents_file_stops_start_up_listing_every_problem(
    module: str, tmp_path: Path
) -> None:
    agents = _agents_file(
        tmp_path,
        {"name": "support", "numbers": ["5550006"], "voice": "robot"},
        {"name": "sales", "numbers": ["*"], "transfer_targets": {"billing": "tel:1"}},
        {"name": "other", "numbers": ["*"], "colour": "blue"},
    )
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    env = {
        **base,
        "AGENTS_FILE": str(agents),
        "PUBLIC_URL": "https://edge.example.com",
        "TWILIO_AUTH_TOKEN": "token-for-the-test",
        "OPENAI_REALTIME_URL": "ws://127.0.0.1:9/v1/realtime",
    }
    result = subprocess.run(
        [sys.executable, "-m", module], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    for problem in (
        "agent 'support': field 'numbers': '5550006' is not an E.164 number",
        "agent 'support': field 'voice': expected one of",
        "agent 'sales': field 'transfer_targets': billing: 'tel:1' is neither",
        "agent 'other': unknown field 'colour'",
        "agent 'other': field 'numbers': '*' (every other number) is answered by agent 'sales'",
    ):
        assert f"{agents}: {problem}" in result.stderr, result.stderr
