"""Calls created through the Twilio API stand-in, placed against the call simulator's fake edge
over real loopback sockets: who answers, the status and AMD callbacks (signed, checked with the
twilio package's RequestValidator), recordings, and the twilio package's own client."""

from __future__ import annotations

import asyncio
import base64
import io
import random
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import numpy as np
import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator

from services.call_sim.api_requests import Account
from services.call_sim.party import PartySettings, party_frames
from services.call_sim.twilio_api import ApiConfig, TwilioApi, serve_api
from shared.audio import ulaw_to_linear
from tests.call_sim.fake_edge import AppCallback, FakeEdge, running
from tests.support.twilio_rest import client
from tests.support.waiting import eventually

pytestmark = pytest.mark.anyio

SID = "AC" + "1" * 32
TOKEN = "fake-edge-auth-token"  # the account's auth token: the edge checks signatures with it
KEY, KEY_SECRET = "SK" + "2" * 32, "api-key-secret"
PUBLIC = "https://edge.switchboard.example"
OWNED = "+15005550006"
HUMAN, MACHINE, NO_ANSWER, BUSY, FAILED = (f"+1415555010{i}" for i in range(5))
PARTIES: dict[str, Any] = {
    MACHINE: "machine",
    NO_ANSWER: "no-answer",
    BUSY: "busy",
    FAILED: "failed",
}
SETTINGS = PartySettings(ring_s=0.05, greeting_s=0.3, beep_s=0.1, detect_s=0.1, hold_s=0.2)
EVENTS = ["initiated", "ringing", "answered", "completed"]
FRAME = 160
AUDIO = bytes(random.Random(7).randrange(0, 127) for _ in range(20 * FRAME))  # no silence
VALIDATOR = RequestValidator(TOKEN)


@asynccontextmanager
async def stand_in(
    settings: PartySettings = SETTINGS, direct: bool = False
) -> AsyncIterator[tuple[FakeEdge, TwilioApi]]:
    """The fake edge and the stand-in, sending requests for PUBLIC to the edge (or, ``direct``,
    to each call's Url's own host and port)."""
    async with running(FakeEdge(PUBLIC, TOKEN)) as edge:
        config = ApiConfig(
            Account(SID, TOKEN, api_keys={KEY: KEY_SECRET}, numbers=frozenset({OWNED})),
            caller_audio=AUDIO,
            parties=PARTIES,
            party=settings,
            edge_urls=() if direct else (edge.url,),
            public_url=None if direct else PUBLIC,
            linger_s=0.4,
            quiet_s=0.1,
        )
        async with serve_api(config) as api:
            yield edge, api


async def create(
    api: TwilioApi, to: str, auth: tuple[str, str] = (SID, TOKEN), **params: Any
) -> dict[str, Any]:
    form = {
        "To": to,
        "From": OWNED,
        "Url": f"{PUBLIC}/twilio/voice",
        "StatusCallback": f"{PUBLIC}/app/status",
        "StatusCallbackEvent": EVENTS,
        **params,
    }
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{api.url}/2010-04-01/Accounts/{SID}/Calls.json", data=form, auth=auth
        )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def finished(api: TwilioApi, sid: str) -> dict[str, Any]:
    """The simulator's record of the call, once it is over."""
    await eventually(lambda: api.calls[sid].done, within_s=8.0, what=f"call {sid} over")
    async with httpx.AsyncClient() as http:
        record: dict[str, Any] = (await http.get(f"{api.url}/_sim/calls/{sid}")).json()
    return record


def at(edge: FakeEdge, path: str) -> list[AppCallback]:
    return [callback for callback in edge.callbacks if callback.path == path]


def assert_signed(edge: FakeEdge) -> None:
    """Every callback carries a signature twilio's own validator accepts for the auth token."""
    assert edge.callbacks
    for callback in edge.callbacks:
        assert VALIDATOR.validate(PUBLIC + callback.path, callback.params, callback.signature)
    assert all(signed for _, _, signed in edge.webhooks)


def without(audio: bytes, ranges: list[list[int]]) -> bytes:
    kept, position = bytearray(), 0
    for start, end in ranges:
        kept += audio[position:start]
        position = end
    return bytes(kept + audio[position:])


def b64(text: str) -> bytes:
    return base64.b64decode(text)


async def test_a_person_answers_and_talks_to_the_app() -> None:
    async with stand_in() as (edge, api):
        created = await create(api, HUMAN)
        record = await finished(api, created["sid"])
    assert created["status"] == "queued" and created["direction"] == "outbound-api"
    assert (created["to"], created["from"], created["account_sid"]) == (HUMAN, OWNED, SID)
    assert created["uri"] == f"/2010-04-01/Accounts/{SID}/Calls/{created['sid']}.json"

    # The status callbacks: every event, in order, numbered, signed with the auth token.
    assert_signed(edge)
    statuses = at(edge, "/app/status")
    assert [c.params["CallStatus"] for c in statuses] == [
        "initiated",
        "ringing",
        "in-progress",
        "completed",
    ]
    assert [c.params["SequenceNumber"] for c in statuses] == ["0", "1", "2", "3"]
    for callback in statuses:
        assert callback.params["CallSid"] == created["sid"]
        assert (callback.params["AccountSid"], callback.params["From"]) == (SID, OWNED)
        assert callback.params["Direction"] == "outbound-api"
        assert callback.params["CallbackSource"] == "call-progress-events"
        assert parsedate_to_datetime(callback.params["Timestamp"]).tzinfo is not None
    completed = statuses[-1].params
    assert completed["CallDuration"] == str(record["duration_s"]) == "1"
    assert (completed["Duration"], completed["SipResponseCode"]) == ("1", "200")
    assert "AnsweredBy" not in completed and "ErrorCode" not in completed

    # The answer: the app's Url, as for an outbound-api call.
    (path, params, _), *stream_callbacks = edge.webhooks
    assert path == "/twilio/voice" and len(stream_callbacks) == 2
    assert (params["Direction"], params["CallStatus"], params["To"]) == (
        "outbound-api",
        "in-progress",
        HUMAN,
    )
    assert "AnsweredBy" not in params

    # What the person said reached the stream, bit-exact; the echo was heard in full.
    assert record["status"] == "completed" and record["party"] == "human"
    report = record["report"]
    assert report["ok"], report
    (stream,) = report["streams"]
    full = AUDIO + b"\xff" * (10 * FRAME)  # the audio, then hold_s of silence
    lost = report["caller_audio_lost"]["ranges"]  # said before the stream opened
    assert b64(stream["sent"]) == without(full, lost) == bytes(edge.streams[0].audio_in)
    heard = b64(stream["heard"])
    assert heard == without(AUDIO, lost)
    played = [(start_ms, b64(audio)) for start_ms, audio in stream["played"]]
    assert b"".join(audio for _, audio in played) == heard
    assert played[0][0] >= stream["sent_at_ms"]  # an echo plays after it was said
    assert [c["kind"] for c in record["callbacks"]].count("call-status") == 4
    assert record["request"]["StatusCallbackEvent"] == EVENTS


async def test_an_answering_machine_with_asynchronous_amd() -> None:
    async with stand_in() as (edge, api):
        created = await create(
            api,
            MACHINE,
            MachineDetection="DetectMessageEnd",
            AsyncAmd="true",
            AsyncAmdStatusCallback=f"{PUBLIC}/app/amd",
        )
        record = await finished(api, created["sid"])
    assert_signed(edge)
    # The stream connected at once: the Url request carries no verdict.
    (path, params, _) = edge.webhooks[0]
    assert path == "/twilio/voice" and "AnsweredBy" not in params
    # The verdict at the end of the greeting and its beep (0.3 + 0.1 s).
    (amd,) = at(edge, "/app/amd")
    assert amd.params == {
        "CallSid": created["sid"],
        "AccountSid": SID,
        "AnsweredBy": "machine_end_beep",
        "MachineDetectionDuration": "400",
    }
    # Decided 400 ms after the answer (the callbacks' arrival times would also measure their
    # delivery, which a busy machine delays).
    assert record["amd"]["at_ms"] - record["amd"]["answered_ms"] >= 400
    assert at(edge, "/app/status")[-1].params["AnsweredBy"] == "machine_end_beep"
    assert record["amd"]["answered_by"] == "machine_end_beep" and record["amd"]["async"]
    assert record["answered_by"] == "machine_end_beep"
    # The app heard the greeting and the beep from the start of the stream.
    (stream,) = record["report"]["streams"]
    greeting = b"".join(party_frames("machine", AUDIO, SETTINGS))
    lost = record["report"]["caller_audio_lost"]["ranges"]
    assert b64(stream["sent"]) == without(greeting, lost)
    assert b64(stream["sent"]).startswith(AUDIO[sum(e - s for s, e in lost) : 2400])


async def test_synchronous_amd_holds_the_url_request_for_the_verdict() -> None:
    async with stand_in() as (edge, api):
        created = await create(api, MACHINE, MachineDetection="Enable")
        record = await finished(api, created["sid"])
    (path, params, _) = edge.webhooks[0]
    assert (params["AnsweredBy"], params["MachineDetectionDuration"]) == ("machine_start", "100")
    # What the machine said while AMD listened reached nobody.
    ((start, end),) = record["report"]["caller_audio_lost"]["ranges"]
    assert start == 0 and end >= 100 * 8 - FRAME
    assert record["amd"] == {
        "mode": "Enable",
        "async": False,
        "answered_by": "machine_start",
        "duration_ms": 100,
        "answered_ms": record["amd"]["answered_ms"],
        "at_ms": record["amd"]["at_ms"],
    }
    assert record["amd"]["at_ms"] - record["amd"]["answered_ms"] >= 100


@pytest.mark.parametrize(
    ("to", "status", "events", "sip"),
    [
        (NO_ANSWER, "no-answer", ["initiated", "ringing", "no-answer"], "487"),
        (BUSY, "busy", ["initiated", "busy"], "486"),
        (FAILED, "failed", ["initiated", "failed"], "404"),
    ],
)
async def test_a_party_that_never_answers(
    to: str, status: str, events: list[str], sip: str
) -> None:
    async with stand_in() as (edge, api):
        # Created with an API key: the callbacks are signed with the auth token all the same.
        created = await create(api, to, auth=(KEY, KEY_SECRET))
        record = await finished(api, created["sid"])
        async with httpx.AsyncClient() as http:
            fetched = await http.get(
                f"{api.url}/2010-04-01/Accounts/{SID}/Calls/{created['sid']}.json",
                auth=(SID, TOKEN),
            )
    assert_signed(edge)
    assert edge.webhooks == [] and edge.streams == []  # the Url is never requested
    statuses = at(edge, "/app/status")
    assert [c.params["CallStatus"] for c in statuses] == events
    final = statuses[-1].params
    assert (final["SipResponseCode"], final["CallDuration"], final["Duration"]) == (sip, "0", "0")
    assert final.get("ErrorCode") == ("21214" if status == "failed" else None)
    assert (record["status"], record["auth"], record["report"]["streams"]) == (
        status,
        f"api-key:{KEY}",
        [],
    )
    assert fetched.json()["status"] == status and fetched.json()["duration"] == "0"


async def test_record_true_records_both_sides_of_the_line() -> None:
    async with stand_in() as (edge, api):
        created = await create(
            api,
            HUMAN,
            Record="true",
            RecordingChannels="dual",
            RecordingStatusCallback=f"{PUBLIC}/app/recording",
        )
        record = await finished(api, created["sid"])
        (recording,) = record["recordings"]
        async with httpx.AsyncClient() as http:
            wav = await http.get(recording["url"] + ".wav")
    assert_signed(edge)
    (callback,) = at(edge, "/app/recording")
    assert callback.params["RecordingStatus"] == "completed"
    assert (callback.params["RecordingSource"], callback.params["RecordingChannels"]) == (
        "OutboundAPI",
        "2",
    )
    assert callback.params["RecordingUrl"] == recording["url"]
    assert recording["url"].startswith(f"{api.url}/2010-04-01/Accounts/{SID}/Recordings/RE")
    completed = at(edge, "/app/status")[-1].params
    assert completed["RecordingSid"] == recording["sid"] == callback.params["RecordingSid"]
    assert completed["RecordingDuration"] == callback.params["RecordingDuration"] == "1"

    # Left: the person, from the answer on (streamed or not); right: what the app played.
    with wave.open(io.BytesIO(wav.content)) as file:
        assert (file.getnchannels(), file.getframerate()) == (2, 8000)
        samples = np.frombuffer(file.readframes(file.getnframes()), "<i2").reshape(-1, 2)
    assert np.array_equal(samples[: len(AUDIO), 0], ulaw_to_linear(AUDIO))
    (stream,) = record["report"]["streams"]
    for start_ms, audio in stream["played"]:
        first = round((start_ms - recording["offset_ms"]) * 8)
        played = ulaw_to_linear(b64(audio))
        assert np.array_equal(samples[first : first + len(played), 1], played)


async def test_start_recording_in_inline_twiml() -> None:
    twiml = (
        f'<Response><Start><Recording recordingStatusCallback="{PUBLIC}/app/recording" '
        'recordingStatusCallbackEvent="in-progress completed"/></Start>'
        f'<Connect><Stream url="{PUBLIC.replace("https", "wss")}/twilio/media"/></Connect>'
        "</Response>"
    )
    async with stand_in() as (edge, api):
        created = await create(api, HUMAN, Url="", Twiml=twiml)
        record = await finished(api, created["sid"])
    assert_signed(edge)
    assert record["report"]["ok"] and record["report"]["twiml"] == [twiml]
    callbacks = at(edge, "/app/recording")
    assert [c.params["RecordingStatus"] for c in callbacks] == ["in-progress", "completed"]
    assert "RecordingDuration" not in callbacks[0].params
    assert callbacks[1].params["RecordingSource"] == "StartCallRecordingTwiML"
    assert callbacks[1].params["RecordingChannels"] == "2"  # <Recording>'s default: dual


async def test_the_twilio_package_creates_a_call_and_reads_refusals() -> None:
    async with stand_in() as (edge, api):
        rest = client(api.url, SID, TOKEN, SID)
        with_key = client(api.url, KEY, KEY_SECRET, SID)
        wrong = client(api.url, KEY, "not-the-secret", SID)
        try:
            call = await asyncio.to_thread(
                rest.calls.create,
                to=HUMAN,
                from_=OWNED,
                url=f"{PUBLIC}/twilio/voice",
                status_callback=f"{PUBLIC}/app/status",
                status_callback_event=["initiated", "completed"],
            )
            assert call.sid.startswith("CA") and len(call.sid) == 34
            assert (call.status, call.direction, call.to) == ("queued", "outbound-api", HUMAN)
            assert call.date_created is not None and call.account_sid == SID
            await finished(api, call.sid)
            fetched = await asyncio.to_thread(with_key.calls(call.sid).fetch)
            assert (fetched.status, fetched.duration) == ("completed", "1")
            with pytest.raises(TwilioRestException) as refused:
                await asyncio.to_thread(
                    with_key.calls.create, to=HUMAN, from_="+15005550099", url=PUBLIC
                )
            assert (refused.value.status, refused.value.code) == (400, 21210)
            with pytest.raises(TwilioRestException) as unauthenticated:
                await asyncio.to_thread(wrong.calls.create, to=HUMAN, from_=OWNED, url=PUBLIC)
            assert (unauthenticated.value.status, unauthenticated.value.code) == (401, 20003)
        finally:
            for each in (rest, with_key, wrong):
                each.http_client.close()
    statuses = at(edge, "/app/status")
    assert [c.params["CallStatus"] for c in statuses] == ["initiated", "completed"]
    assert [c.params["SequenceNumber"] for c in statuses] == ["0", "1"]
    assert list(api.calls) == [call.sid]  # the refusals created nothing


async def test_a_failing_url_falls_back() -> None:
    async with stand_in() as (edge, api):
        created = await create(
            api, HUMAN, Url=f"{PUBLIC}/twilio/gone", FallbackUrl=f"{PUBLIC}/twilio/voice"
        )
        record = await finished(api, created["sid"])
    (path, params, _) = edge.webhooks[0]
    assert path == "/twilio/voice"
    assert (params["ErrorCode"], params["ErrorUrl"]) == ("11200", f"{PUBLIC}/twilio/gone")
    assert record["report"]["ok"] and len(record["report"]["streams"]) == 1
    assert any("FallbackUrl" in note for note in record["report"]["notes"])


async def test_time_limit_cuts_the_call() -> None:
    long_hold = PartySettings(ring_s=0.0, hold_s=5.0)
    async with stand_in(long_hold) as (edge, api):
        created = await create(api, HUMAN, TimeLimit="1", Record="true")
        record = await finished(api, created["sid"])
    assert record["status"] == "completed" and record["duration_s"] == 1
    assert any("TimeLimit" in note for note in record["report"]["notes"])
    (recording,) = record["recordings"]
    assert recording["status"] == "completed" and recording["duration_s"] == 1
    assert at(edge, "/app/status")[-1].params["CallDuration"] == "1"


async def test_stopping_the_stand_in_hangs_up_calls_in_flight() -> None:
    long_hold = PartySettings(ring_s=0.0, hold_s=5.0)
    async with stand_in(long_hold) as (edge, api):
        created = await create(api, HUMAN)
        await eventually(lambda: edge.streams and edge.streams[0].start, what="stream started")
        call = api.calls[created["sid"]]
    assert not call.done and call.facts.status == "in-progress"


async def test_without_an_edge_requests_go_where_the_url_says() -> None:
    async with stand_in(direct=True) as (edge, api):
        created = await create(
            api, BUSY, Url=f"{edge.url}/twilio/voice", StatusCallback=f"{edge.url}/app/status"
        )
        await finished(api, created["sid"])
    (initiated, busy) = at(edge, "/app/status")
    for callback in (initiated, busy):
        assert VALIDATOR.validate(edge.url + callback.path, callback.params, callback.signature)
    assert busy.params["CallStatus"] == "busy"
