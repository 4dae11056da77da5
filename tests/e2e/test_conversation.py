"""Conversations through real processes: the caller talks over the model's reply (barge-in),
the model ends the call with its end_call tool or calls a configured HTTP tool, the caller
presses a key, the duration cap ends the call. Call simulator → edge → Redis → worker →
realtime simulator (conversation mode), and back."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from services.call_sim import place_call
from services.devstack import Stack
from services.realtime_sim.reply import default_reply_audio
from shared.audio import FRAME_BYTES, SILENCE_BYTE
from tests.e2e.conftest import StackFactory, call_config

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

CALLER_AUDIO = Path("services/call_sim/assets/caller.ulaw").read_bytes()
ADMIN_TOKEN = "e2e-admin-token-0123456789"
SILENCE = bytes([SILENCE_BYTE])


def sim_session(stack: Stack, timeout_s: float = 10) -> dict[str, Any]:
    """The one realtime session of the test's call, once the simulator has written it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if stack.sim_record.exists():
            lines = [line for line in stack.sim_record.read_text().splitlines() if line]
            if lines:
                (only,) = lines
                session: dict[str, Any] = json.loads(only)
                return session
        time.sleep(0.05)
    raise AssertionError("the realtime simulator recorded no session")


def item_audio(session: dict[str, Any]) -> dict[str, bytes]:
    """The model's audio per item, in the order the items were sent."""
    audio = base64.b64decode(session["audio_out_b64"])
    items: dict[str, bytes] = {}
    offset = 0
    for delta in session["deltas"]:
        items[delta["item_id"]] = (
            items.get(delta["item_id"], b"") + audio[offset : offset + delta["bytes"]]
        )
        offset += delta["bytes"]
    return items


def padded(audio: bytes) -> bytes:
    """As the edge sends an item: whole 20 ms frames, the last one padded with silence."""
    return audio + SILENCE * (-len(audio) % FRAME_BYTES)


def read_api(stack: Stack, path: str) -> dict[str, Any]:
    request = urllib.request.Request(
        stack.edge_urls[0] + path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=2) as response:
        body: dict[str, Any] = json.loads(response.read())
        return body


def wait_for_call_end(stack: Stack, call_sid: str, timeout_s: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = read_api(stack, f"/calls/{call_sid}")
        if "ended_by" in body["call"]:
            return body
        time.sleep(0.05)
    raise AssertionError(f"call {call_sid} has no summary: {body}")


def tokens_reported(session: dict[str, Any]) -> int:
    return sum(
        block[side][kind]
        for block in session["usage"]
        for side in ("input_token_details", "output_token_details")
        for kind in ("text_tokens", "audio_tokens")
    )


async def test_caller_barges_in_reply_is_cleared_and_truncated_to_what_was_heard(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(workers=1, edge_env={"ADMIN_TOKEN": ADMIN_TOKEN})
    # Speak, wait while the reply plays for about 2 s, speak over it, then listen to the second
    # reply to its end.
    gap = SILENCE * (25 * 800)  # 2.5 s
    report = await place_call(call_config(stack, CALLER_AUDIO + gap + CALLER_AUDIO, hold_s=10.0))

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
    make_stack: StackFactory,
) -> None:
    stack = make_stack(
        workers=1, sim_args=["--end-call-after", "1"], edge_env={"ADMIN_TOKEN": ADMIN_TOKEN}
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

REPLY_AUDIO = default_reply_audio()[: 2 * 8000]  # a 2 s reply keeps these calls short


class ToolServer:
    """A tiny HTTP endpoint for the worker's tool calls, in a thread: /ok answers, /broken
    fails with 500, /slow answers after 3 s."""

    ANSWER = "Order 42 ships tomorrow."

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append((self.path, body))
                if self.path == "/slow":
                    time.sleep(3)
                status, text = (500, "boom") if self.path == "/broken" else (200, owner.ANSWER)
                data = text.encode()
                with contextlib.suppress(OSError):  # the worker may have given up (/slow)
                    self.send_response(status)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ToolServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def tools_stack(
    make_stack: StackFactory,
    tmp_path: Path,
    server: ToolServer,
    path: str,
    timeout_s: float,
    sim_args: list[str] | None = None,
) -> Stack:
    tools = [
        {
            "name": "lookup_order",
            "description": "Look up an order by its number.",
            "parameters": {
                "type": "object",
                "properties": {"order": {"type": "string"}},
                "required": ["order"],
            },
            "url": server.url + path,
            "timeout_s": timeout_s,
        }
    ]
    tools_file = tmp_path / "tools.json"
    tools_file.write_text(json.dumps(tools))
    reply = tmp_path / "reply.ulaw"
    reply.write_bytes(REPLY_AUDIO)
    return make_stack(
        workers=1,
        worker_env={"TOOLS_FILE": str(tools_file)},
        edge_env={"ADMIN_TOKEN": ADMIN_TOKEN},
        sim_args=[
            "--reply-audio",
            str(reply),
            "--call-tool",
            "lookup_order",
            "--tool-arguments",
            '{"order": "42"}',
            *(sim_args or []),
        ],
    )


def worker_log(stack: Stack) -> str:
    return "".join(p.log() for p in stack.processes() if p.name.startswith("worker"))


async def test_a_configured_tool_is_called_and_its_answer_reaches_the_model(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    with ToolServer() as server:
        stack = tools_stack(make_stack, tmp_path, server, "/ok", 5)
        report = await place_call(call_config(stack, CALLER_AUDIO, hold_s=6.0))

    assert report.problems() == []
    assert server.requests == [("/ok", {"call_sid": report.call_sid, "arguments": {"order": "42"}})]
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
    reply_file = tmp_path / "reply.ulaw"
    reply_file.write_bytes(REPLY_AUDIO)
    stack = make_stack(workers=1, sim_args=["--reply-audio", str(reply_file)])
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
    reply_file = tmp_path / "reply.ulaw"
    reply_file.write_bytes(REPLY_AUDIO)
    stack = make_stack(workers=1, sim_args=["--reply-audio", str(reply_file), "--speed", "1"])
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
    reply_file = tmp_path / "reply.ulaw"
    reply_file.write_bytes(REPLY_AUDIO)
    stack = make_stack(
        workers=1,
        sim_args=["--reply-audio", str(reply_file)],
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
