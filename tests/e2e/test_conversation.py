"""Conversations through real processes: the caller talks over the model's reply (barge-in),
the model ends the call with its end_call tool or calls a configured HTTP tool, the caller
presses a key, the duration cap ends the call. Call simulator → edge → Redis → worker →
realtime simulator (conversation mode), and back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.call_sim import place_call
from tests.support.calls import (
    CALLER_AUDIO,
    REPLY_AUDIO,
    SILENCE,
    item_audio,
    padded,
    short_reply,
    sim_session,
    tokens_reported,
    wait_for_call_end,
)
from tests.support.stack import ADMIN_TOKEN, StackFactory, call_config, read_api, worker_log
from tests.support.tool_server import ToolServer, tools_stack

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


# It measures a timing property (the truncation within ±60 ms of what the caller heard) that the
# saturated parallel pass can stretch by scheduling alone (79 ms once, with 6 workers): it runs
# in the serial pass, as the crash-gap measurement once did.
@pytest.mark.serial
async def test_caller_barges_in_reply_is_cleared_and_truncated_to_what_was_heard(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    stack = make_stack(
        workers=1, sim_args=short_reply(tmp_path, 4.0), edge_env={"ADMIN_TOKEN": ADMIN_TOKEN}
    )
    # Speak, wait while the 4 s reply plays for about 2 s, speak over it, then listen to the
    # second reply to its end (the caller stays on the line while audio comes).
    gap = SILENCE * (25 * 800)  # 2.5 s
    report = await place_call(call_config(stack, CALLER_AUDIO + gap + CALLER_AUDIO, hold_s=4.0))

    assert report.problems() == []
    assert report.clears == 1
    session = sim_session(stack)
    assert session["invalid_events"] == []
    assert session["errors"] == []  # no truncate past the audio, no cancel of nothing
    first, second = item_audio(session)  # the interrupted reply, then the full second one
    items = item_audio(session)
    # The caller heard the first reply up to the clear, then the whole second reply: not one
    # byte of the first reply after the clear.
    heard = report.heard_audio
    tail = padded(items[second])
    assert heard.endswith(tail)
    heard_first = heard[: len(heard) - len(tail)]
    assert 0 < len(heard_first) < len(items[first])
    assert items[first].startswith(heard_first)
    # The model was told exactly that much.
    (truncate,) = session["truncates"]
    assert truncate["item_id"] == first
    assert abs(truncate["audio_end_ms"] - len(heard_first) / 8) <= 60, (
        truncate,
        len(heard_first) / 8,
    )

    body = wait_for_call_end(stack, report.call_sid)
    record = body["call"]
    assert record["barge_ins"] == 1
    assert record["ended_by"] == "caller"
    assert record["live"] is False
    assert record["input_format"] == record["output_format"] == "audio/pcmu"
    tokens = sum(record[f"tokens_{d}_{m}"] for d in ("input", "output") for m in ("text", "audio"))
    assert tokens == tokens_reported(session) > 0
    roles = [turn["role"] for turn in body["turns"]]
    assert roles.count("user") == 2 and roles.count("assistant") == 2
    cut = [t["text"] for t in body["turns"] if t["role"] == "assistant"][0]
    assert cut.endswith("…")  # what the caller did not hear is not remembered
    listed = read_api(stack, "/calls")["calls"]
    assert [c["call_sid"] for c in listed] == [report.call_sid]


async def test_model_ends_the_call_after_its_goodbye_has_been_heard(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    stack = make_stack(
        workers=1,
        sim_args=["--end-call-after", "1", *short_reply(tmp_path)],
        edge_env={"ADMIN_TOKEN": ADMIN_TOKEN},
    )
    report = await place_call(call_config(stack, CALLER_AUDIO, hold_s=20.0))

    assert report.problems() == []
    session = sim_session(stack)
    assert session["function_calls"] == ["end_call"]
    assert session["invalid_events"] == [] and session["errors"] == []
    (goodbye,) = item_audio(session).values()
    # The goodbye was heard to its last byte; then the edge closed the stream and the resume
    # route hung up — long before the caller's 20 s of hold would have run out.
    assert report.heard_audio == padded(goodbye)
    assert report.closed_by == "edge"
    assert report.redirects and report.redirects[-1].endswith("/twilio/voice/resume")
    assert "<Hangup/>" in report.twiml[-1]
    assert report.timings.duration_ms < 18_000

    record = wait_for_call_end(stack, report.call_sid)["call"]
    assert record["ended_by"] == "model"
    assert record["end_reason"] == "model_ended"
    assert record["state"] == "ended"


# --- tools from TOOLS_FILE, DTMF, caps --------------------------------------------------------


async def test_a_configured_tool_is_called_and_its_answer_reaches_the_model(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    with ToolServer() as server:
        stack = tools_stack(make_stack, tmp_path, server, "/ok", 5)
        report = await place_call(call_config(stack, CALLER_AUDIO, hold_s=6.0))

    assert report.problems() == []
    ((path, request),) = server.requests
    assert (path, request["call_sid"], request["arguments"]) == (
        "/ok",
        report.call_sid,
        {"order": "42"},
    )
    assert request["variables"]["call_sid"] == report.call_sid  # the call's variables too
    session = sim_session(stack)
    assert session["function_calls"] == ["lookup_order"]
    assert session["tool_outputs"] == [ToolServer.ANSWER]
    assert session["invalid_events"] == [] and session["errors"] == []
    # The reply that followed the tool's answer was heard in full; the caller hung up.
    (reply,) = item_audio(session).values()
    assert report.heard_audio == padded(reply)
    record = wait_for_call_end(stack, report.call_sid)["call"]
    assert record["ended_by"] == "caller"


@pytest.mark.parametrize(
    ("path", "timeout_s", "says"),
    [("/broken", 5.0, "HTTP 500"), ("/slow", 0.5, "no answer within 0.5 s")],
)
async def test_a_failing_tool_gives_the_model_an_error_and_the_call_goes_on(
    make_stack: StackFactory, tmp_path: Path, path: str, timeout_s: float, says: str
) -> None:
    with ToolServer() as server:
        stack = tools_stack(make_stack, tmp_path, server, path, timeout_s)
        report = await place_call(call_config(stack, CALLER_AUDIO, hold_s=6.0))

    assert report.problems() == []
    assert [p for p, _ in server.requests] == [path]
    session = sim_session(stack)
    (output,) = session["tool_outputs"]
    assert json.loads(output) == {"error": f"the tool lookup_order failed: {says}"}
    assert session["invalid_events"] == [] and session["errors"] == []
    (reply,) = item_audio(session).values()
    assert report.heard_audio == padded(reply)  # the call went on: the reply was heard
    record = wait_for_call_end(stack, report.call_sid)["call"]
    assert record["ended_by"] == "caller"
    assert f"tool lookup_order failed: {says}" in worker_log(stack)


async def test_a_key_press_reaches_the_model_and_prompts_a_reply(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    stack = make_stack(workers=1, sim_args=short_reply(tmp_path))
    # Silence only: no spoken turn; the key press is the caller's turn.
    report = await place_call(call_config(stack, SILENCE * 8000, hold_s=5.0, dtmf=[(0.5, "4")]))

    assert report.problems() == []
    session = sim_session(stack)
    assert session["user_texts"] == ["The caller pressed 4 on the keypad."]
    assert session["client_events"]["response.create"] == 1
    assert session["invalid_events"] == [] and session["errors"] == []
    (reply,) = item_audio(session).values()
    assert report.heard_audio.endswith(padded(reply))


async def test_a_key_press_during_a_reply_waits_for_its_cancel_before_asking_again(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    # At real-time pace the reply is still being generated when the key is pressed: the real
    # server ends a cancelled response a little later, and refuses a response.create before
    # that (conversation_already_has_active_response), as the simulator does.
    stack = make_stack(workers=1, sim_args=[*short_reply(tmp_path), "--speed", "1"])
    speech_s = len(CALLER_AUDIO) / 8000
    report = await place_call(
        call_config(stack, CALLER_AUDIO, hold_s=6.0, dtmf=[(speech_s + 1.5, "7")])
    )

    assert report.problems() == []
    session = sim_session(stack)
    assert session["user_texts"] == ["The caller pressed 7 on the keypad."]
    assert session["client_events"]["response.cancel"] == 1
    assert session["client_events"]["response.create"] == 1
    assert session["invalid_events"] == [] and session["errors"] == []
    first, second = item_audio(session).values()  # the cut reply, then the key's reply
    assert len(first) < len(REPLY_AUDIO)  # cancelled while it was being generated
    assert report.heard_audio.endswith(padded(second))


async def test_duration_cap_ends_the_call_after_the_goodbye_is_heard_usage_on_the_record(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    stack = make_stack(
        workers=1,
        sim_args=short_reply(tmp_path),
        worker_env={"MAX_CALL_DURATION": "5"},
        edge_env={"ADMIN_TOKEN": ADMIN_TOKEN},
    )
    report = await place_call(call_config(stack, CALLER_AUDIO, hold_s=25.0))

    assert report.problems() == []
    session = sim_session(stack)
    assert session["invalid_events"] == [] and session["errors"] == []
    replies = list(item_audio(session).values())
    assert len(replies) == 2  # the answer, then the goodbye asked for at the cap
    # Every byte of both was heard, the goodbye to its end; then the edge hung up, long
    # before the caller's 25 s of hold ran out.
    assert report.heard_audio == b"".join(padded(audio) for audio in replies)
    assert report.closed_by == "edge"
    assert "<Hangup/>" in report.twiml[-1]
    assert report.timings.duration_ms < 20_000

    record = wait_for_call_end(stack, report.call_sid)["call"]
    assert record["ended_by"] == "limit"
    tokens = sum(record[f"tokens_{d}_{m}"] for d in ("input", "output") for m in ("text", "audio"))
    assert tokens == tokens_reported(session) > 0
