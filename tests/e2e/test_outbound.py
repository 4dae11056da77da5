"""Outbound calls through real processes: POST /calls on an edge's admin port → the call
simulator's stand-in for Twilio's REST API (checking the request and the credentials as Twilio
does) → the call placed against the edge (answer webhook, stream, status and detection
callbacks, all signed) → the pre-warmed worker → the realtime simulator, and back. Then
Twilio's recording of an agent that records."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from services.devstack import DEMO_ACCOUNT_SID, DEMO_API_TOKEN, Stack
from services.realtime_worker.answering import voicemail_cue
from tests.support.calls import short_reply, sim_session, wait_for_sessions
from tests.support.stack import ADMIN_TOKEN, StackFactory, call_record, read_api
from tests.support.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

OUR_NUMBER = "+15005550006"  # the sales agent's, owned by the stand-in account
RECORDED_NUMBER = "+15005550011"  # the recorded agent's
HUMAN = "+15005550101"
MACHINE = "+15005550102"
MACHINE_HANGUP = "+15005550103"
NO_ANSWER = "+15005550104"
API_KEY_SID = "SK" + "0123456789abcdef" * 2
API_KEY_SECRET = "e2e-api-key-secret-0123456789"
UNOWNED_NUMBER = "+15005550013"  # an agent's, but not a number of the Twilio account
MESSAGE = "Hello {name}, this is Example Co about your order. Please call us back."


def _agents(tmp_path: Path) -> Path:
    path = tmp_path / "agents.yaml"
    agents = [
        {
            "name": "sales",
            "numbers": [OUR_NUMBER],
            "instructions": "You call {name} about order {order}.",
            "greeting": "Hello {name}, this is Example Co.",
            "voicemail": "message",
            "voicemail_message": MESSAGE,
        },
        {
            "name": "quiet",
            "numbers": ["+15005550012", UNOWNED_NUMBER],
            "greeting": "Hello, Example Co here.",
            "voicemail": "hangup",
        },
        {
            "name": "recorded",
            "numbers": [RECORDED_NUMBER],
            "greeting": "Hello, Example Co here.",
            "record": True,
            "recording_notice": "This call is recorded.",
        },
    ]
    path.write_text(yaml.safe_dump({"agents": agents}))
    return path


def _stack(
    make_stack: StackFactory, tmp_path: Path, api_key: bool = False, **edge_env: str
) -> Stack:
    agents = _agents(tmp_path)
    parties = {HUMAN: "human", MACHINE: "machine", MACHINE_HANGUP: "machine"}
    parties[NO_ANSWER] = "no-answer"
    api_args = ["--ring-s", "1", "--detect-s", "1", "--greeting-s", "2", "--hold-s", "6"]
    for number in (OUR_NUMBER, "+15005550012", RECORDED_NUMBER):
        api_args += ["--number", number]
    for number, party in parties.items():
        api_args += ["--party", f"{number}={party}"]
    if api_key:  # the edge asks Twilio with an API key instead of the auth token
        api_args += ["--api-key", f"{API_KEY_SID}:{API_KEY_SECRET}"]
        edge_env |= {"TWILIO_API_KEY_SID": API_KEY_SID, "TWILIO_API_KEY_SECRET": API_KEY_SECRET}
    return make_stack(
        workers=1,
        edge_env={"ADMIN_TOKEN": ADMIN_TOKEN, "AGENTS_FILE": str(agents), **edge_env},
        worker_env={"AGENTS_FILE": str(agents)},
        sim_args=short_reply(tmp_path),
        twilio_api_args=api_args,
    )


async def _post(
    stack: Stack, body: dict[str, Any], token: str = DEMO_API_TOKEN, port: str = "admin"
) -> httpx.Response:
    base = stack.edge_admin_urls[0] if port == "admin" else stack.edge_urls[0]
    async with httpx.AsyncClient(timeout=15) as client:
        return await client.post(
            f"{base}/calls", json=body, headers={"Authorization": f"Bearer {token}"}
        )


async def _place(stack: Stack, to: str, **body: Any) -> str:
    answer = await _post(stack, {"to": to, "from": OUR_NUMBER, "agent": "sales", **body})
    assert answer.status_code == 201, answer.text
    sid: str = answer.json()["call_sid"]
    return sid


async def _finished(stack: Stack, sid: str, timeout_s: float = 40) -> dict[str, Any]:
    """The stand-in's account of the call once it is over."""
    async with httpx.AsyncClient(timeout=5) as client:

        async def done() -> dict[str, Any]:
            call: dict[str, Any] = (
                await client.get(f"{stack.twilio_api_url}/_sim/calls/{sid}")
            ).json()
            return call if call["done"] and call["report"] is not None else {}

        result: dict[str, Any] = await eventually(done, timeout_s)
        return result


async def _record_final(stack: Stack, sid: str) -> dict[str, Any]:
    """The call's record once its end and Twilio's final status are on it."""

    def final() -> dict[str, Any]:
        record: dict[str, Any] = read_api(stack, f"/calls/{sid}")["call"]
        return record if record.get("call_status") and not record["live"] else {}

    result: dict[str, Any] = await eventually(lambda: asyncio.to_thread(final), 15)
    return result


def _callbacks(call: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [c for c in call["callbacks"] if c["kind"] == kind]


async def test_a_person_answers_and_is_greeted_once_detection_says_human(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    stack = _stack(make_stack, tmp_path)
    sid = await _place(
        stack, HUMAN, machine_detection=True, variables={"name": "Ada", "order": "42"}
    )
    call = await _finished(stack, sid)

    # Twilio was asked for exactly this.
    request = call["request"]
    assert request["To"] == HUMAN and request["From"] == OUR_NUMBER
    assert request["Url"] == f"{stack.config.public_url}/twilio/voice"
    assert request["StatusCallback"] == f"{stack.config.public_url}/twilio/outbound/status"
    assert request["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    assert (request["MachineDetection"], request["AsyncAmd"]) == ("DetectMessageEnd", "true")
    assert request["AsyncAmdStatusCallback"] == f"{stack.config.public_url}/twilio/outbound/amd"
    assert call["auth"] == "auth-token" and call["account_sid"] == DEMO_ACCOUNT_SID
    # Every callback reached the edge and was accepted (signed, and the signature checked).
    assert call["callbacks"] and all(c["http_status"] in (200, 204) for c in call["callbacks"])
    (amd,) = _callbacks(call, "amd-status")
    assert amd["params"]["AnsweredBy"] == "human"

    # The model waited for the verdict, then greeted the person by name.
    session = sim_session(stack)
    assert session["instructions"] == "You call Ada about order 42."
    assert (
        'saying exactly this, and nothing more: "Hello Ada, this is Example Co."'
        in (session["response_instructions"][0])
    )
    # The person heard the greeting: the model's audio, bit-exact, on the one stream.
    (stream,) = call["report"]["streams"]
    heard = base64.b64decode(stream["heard"])
    greeting = base64.b64decode(session["audio_out_b64"])
    assert greeting and heard.startswith(greeting[: len(heard)]) and len(heard) >= 8000
    # ... and only once the verdict was in: its first sound played after detection decided
    # (both on the stand-in's clock for the call, from its creation).
    first_played_ms = stream["played"][0][0]
    assert call["amd"]["at_ms"] is not None and first_played_ms >= call["amd"]["at_ms"]

    record = await _record_final(stack, sid)
    assert record["direction"] == "outbound-api" and record["agent"] == "sales"
    assert record["answered_by"] == "human" and record["call_status"] == "completed"
    assert record["variables"] == {"name": "Ada", "order": "42"}
    assert record["state"] == "ended"
    for stamp in ("created_ms", "ringing_ms", "answered_ms", "completed_ms"):
        assert isinstance(record[stamp], int), stamp
    assert record["created_ms"] <= record["ringing_ms"] <= record["answered_ms"]


async def test_a_machine_gets_the_whole_message_or_a_silent_hang_up(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    stack = _stack(make_stack, tmp_path)
    message_sid = await _place(stack, MACHINE, machine_detection=True, variables={"name": "Ada"})
    answer = await _post(
        stack,
        {"to": MACHINE_HANGUP, "from": "+15005550012", "agent": "quiet", "machine_detection": True},
    )
    assert answer.status_code == 201, answer.text
    hangup_sid = answer.json()["call_sid"]
    message_call, hangup_call = await asyncio.gather(
        _finished(stack, message_sid), _finished(stack, hangup_sid)
    )
    sessions = {s["instructions"]: s for s in wait_for_sessions(stack, 2)}

    # voicemail: message → the model left the message, heard to its last byte, then hung up.
    session = sessions["You call Ada about order {order}."]
    words = "Hello Ada, this is Example Co about your order. Please call us back."
    assert voicemail_cue(words) in session["response_instructions"][0]
    assert session["audio_in_bytes"] == 0  # the model never heard the machine
    (stream,) = message_call["report"]["streams"]
    message = base64.b64decode(session["audio_out_b64"])
    assert message and base64.b64decode(stream["heard"]) == message
    record = await _record_final(stack, message_sid)
    assert (record["answered_by"], record["end_reason"]) == ("machine_end_beep", "voicemail")
    assert record["ended_by"] == "machine"

    # voicemail: hangup → the call ends within a second of the verdict; the model never spoke.
    quiet = [s for s in sessions.values() if s is not session][0]
    assert quiet["deltas"] == [] and quiet["response_instructions"] == []
    (verdict,) = _callbacks(hangup_call, "amd-status")
    (completed,) = [c for c in _callbacks(hangup_call, "call-status") if c["event"] == "completed"]
    ended_after_ms = completed["at_ms"] - verdict["at_ms"]
    print(f"hang-up on a machine: the call ended {ended_after_ms:.0f} ms after the verdict")
    assert ended_after_ms <= 2500  # 1 s asked; generous on a busy 2-core machine
    assert base64.b64decode(hangup_call["report"]["streams"][0]["heard"]) == b""
    record = await _record_final(stack, hangup_sid)
    assert (record["end_reason"], record["ended_by"]) == ("no_person", "machine")


async def test_refusals_name_what_is_wrong(make_stack: StackFactory, tmp_path: Path) -> None:
    stack = _stack(make_stack, tmp_path, OUTBOUND_MAX_CONCURRENT="1")
    good = {"to": NO_ANSWER, "from": OUR_NUMBER, "agent": "sales"}
    assert (await _post(stack, good, token="wrong-token-0123456789")).status_code == 401
    read_only = await _post(stack, good, token=ADMIN_TOKEN)
    assert read_only.status_code == 403 and "read-only" in read_only.json()["error"]
    assert (await _post(stack, good, port="public")).status_code == 404  # admin port only
    bad_number = await _post(stack, {**good, "to": "5550104"})
    assert bad_number.status_code == 422
    assert "field 'to' must be an E.164 number" in bad_number.json()["problems"][0]
    not_ours = await _post(stack, {**good, "from": RECORDED_NUMBER})
    assert not_ours.status_code == 422
    assert "is not a number of agent 'sales'" in not_ours.json()["problems"][0]
    # A number the agent has but the Twilio account does not own: Twilio's own refusal.
    twilio_says = await _post(stack, {"to": NO_ANSWER, "from": UNOWNED_NUMBER, "agent": "quiet"})
    assert twilio_says.status_code == 400, twilio_says.text
    assert twilio_says.json()["twilio_code"] == 21210

    ringing = await _place(stack, NO_ANSWER)
    over = await _post(stack, good)
    assert over.status_code == 429 and "1 outbound calls" in over.json()["error"]
    call = await _finished(stack, ringing)
    assert call["status"] == "no-answer"
    record = await _record_final(stack, ringing)
    assert (record["state"], record["call_status"]) == ("no-answer", "no-answer")
    # Its final status freed the slot; the pre-warmed worker let the call go.
    again = await _post(stack, good)
    assert again.status_code == 201, again.text


async def test_twilio_records_an_agent_that_records_from_before_the_stream(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    stack = _stack(make_stack, tmp_path)
    answer = await _post(stack, {"to": HUMAN, "from": RECORDED_NUMBER, "agent": "recorded"})
    assert answer.status_code == 201, answer.text
    sid = answer.json()["call_sid"]
    call = await _finished(stack, sid)
    report = call["report"]
    assert report["said"] == ["This call is recorded."]
    (recording,) = call["recordings"]
    assert recording["source"] == "StartCallRecordingTwiML" and recording["channels"] == 2
    # The answer's TwiML: the notice, the recording, then the stream (a recording started after
    # <Connect> would miss the whole conversation).
    document = ET.fromstring(report["twiml"][0])
    assert [verb.tag for verb in document][:3] == ["Say", "Start", "Connect"]
    heard_s = len(base64.b64decode(report["streams"][0]["heard"])) / 8000
    assert heard_s > 0 and recording["duration_s"] >= heard_s
    callbacks = _callbacks(call, "recording-status")
    assert [c["params"]["RecordingStatus"] for c in callbacks] == ["in-progress", "completed"]
    assert all(c["http_status"] in (200, 204) for c in callbacks)

    def landed() -> dict[str, str]:
        record = call_record(stack, sid)
        return record if record.get("recording_status") == "completed" else {}

    record = await eventually(lambda: asyncio.to_thread(landed), 10)
    assert record["recording_sid"] == recording["sid"]
    assert record["recording_url"] == recording["url"]
    assert int(record["recording_duration"]) == recording["duration_s"]


async def test_the_console_command_places_a_call_with_an_api_key(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    stack = _stack(make_stack, tmp_path, api_key=True)
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.cli", "call", HUMAN, "--from", OUR_NUMBER]
        + ["--agent", "sales", "--var", "name=Ada", "--edge", stack.edge_admin_urls[0]],
        env={"API_TOKEN": DEMO_API_TOKEN, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    sid = json.loads(result.stdout)["call_sid"]
    call = await _finished(stack, sid)
    assert call["request"]["From"] == OUR_NUMBER and call["status"] == "completed"
    assert call["auth"] == f"api-key:{API_KEY_SID}"
    # The callbacks are still signed with the auth token, which the edge checks.
    assert all(c["http_status"] in (200, 204) for c in call["callbacks"])
