"""Recordings: ``<Start><Recording>``/``<Stop><Recording>`` as TwiML (``recording_twiml.py``),
the recording made from the line (``recorder.py``, ``recording_audio.py``) and what its status
callback says (``recording.py``). Pure functions, no sockets."""

from __future__ import annotations

import io
import wave
from email.utils import parsedate_to_datetime
from typing import Any

import numpy as np
import pytest

from services.call_sim.recorder import CallRecorder, Placed, assemble
from services.call_sim.recording import (
    SOURCE_API,
    Recording,
    RecordingSpec,
    callback_params,
    new_recording,
    recording_url,
)
from services.call_sim.recording_audio import Window, place, trim_silence
from services.call_sim.twiml import Connect, StartRecording, StopRecording, parse_twiml
from shared.audio import SILENCE_BYTE, ulaw_to_linear

pytestmark = pytest.mark.anyio

BASE = "https://app.example.com/twiml/voice"
Q = bytes([SILENCE_BYTE])


def document(body: str) -> Any:
    return parse_twiml(f"<Response>{body}</Response>", BASE)


# --- the TwiML -----------------------------------------------------------------------------


def test_start_recording_defaults_are_the_documented_ones() -> None:
    parsed = document("<Start><Recording/></Start>")
    (verb,) = parsed.verbs
    assert isinstance(verb, StartRecording) and parsed.problems == ()
    assert verb.spec == RecordingSpec()
    assert (verb.spec.channels, verb.spec.track, verb.spec.trim) == ("dual", "both", "trim-silence")
    assert verb.spec.status_callback_events == ("completed",)
    assert verb.spec.source == "StartCallRecordingTwiML"


def test_start_recording_attributes_resolve_and_are_read() -> None:
    parsed = document(
        '<Start><Recording name="r1" channels="mono" track="inbound" trim="do-not-trim" '
        'recordingStatusCallback="../recording" recordingStatusCallbackMethod="get" '
        'recordingStatusCallbackEvent="in-progress completed absent" '
        'recordingConfigurationId="RC1"/></Start>'
    )
    (verb,) = parsed.verbs
    assert isinstance(verb, StartRecording) and parsed.problems == ()
    assert verb.spec == RecordingSpec(
        name="r1",
        channels="mono",
        track="inbound",
        trim="do-not-trim",
        status_callback="https://app.example.com/recording",
        status_callback_method="GET",
        status_callback_events=("in-progress", "completed", "absent"),
        configuration_id="RC1",
    )


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('<Start><Recording channels="stereo"/></Start>', "channels='stereo'"),
        ('<Start><Recording track="left"/></Start>', "track='left'"),
        ('<Start><Recording trim="yes"/></Start>', "trim='yes'"),
        ('<Start><Recording recordingStatusCallbackMethod="PUT"/></Start>', "must be GET or POST"),
        ('<Start><Recording recordingStatusCallbackEvent="done"/></Start>', "space-separated"),
        ('<Start><Recording recordingStatusCallbackEvent="completed"/></Start>', "no use"),
        ('<Start><Recording name=" "/></Start>', "empty name"),
        ('<Start><Recording colour="red"/></Start>', "'colour'"),
        ("<Start><Recording><Say>x</Say></Recording></Start>", "no nested elements"),
        ('<Start><Recording/><Stream url="wss://x/y"/></Start>', "only its first <Recording>"),
        ("<Stop><Recording/></Stop>", "needs the name"),
        (
            '<Connect><Stream url="wss://x/y"/></Connect><Start><Recording/></Start>',
            "the stream is not recorded",
        ),
    ],
)
def test_bad_recordings_are_reported_and_defaults_used(body: str, problem: str) -> None:
    parsed = document(body)
    assert any(problem in text for text in parsed.problems), parsed.problems


def test_stop_recording_names_the_recording() -> None:
    parsed = document(
        '<Start><Recording name="all"/></Start><Connect><Stream url="wss://x/y"/></Connect>'
        '<Stop><Recording name="all"/></Stop>'
    )
    start, connect, stop = parsed.verbs
    assert isinstance(start, StartRecording) and start.spec.name == "all"
    assert isinstance(connect, Connect) and stop == StopRecording("all")
    assert parsed.problems == ()


# --- the audio ------------------------------------------------------------------------------


def recording(**spec: Any) -> Recording:
    return new_recording(RecordingSpec(**spec), "RE" + "0" * 32, "https://api/RE", 100.0)


def test_place_lays_audio_on_the_call_clock() -> None:
    window = Window(100.0, 102.0)  # 16 samples
    assert place(window, [Placed(100.5, b"\x01\x02"), Placed(101.5, b"\x03" * 10)]) == (
        Q * 4 + b"\x01\x02" + Q * 6 + b"\x03" * 4  # cut at the window's end
    )
    assert trim_silence(Q * 3 + b"\x01" + Q, Q * 5) == (3, b"\x01", Q)


def test_a_recording_holds_the_line_from_its_start_to_the_end() -> None:
    made = recording()
    caller = [Placed(90.0, b"\x10" * 160)]  # said from before the recording began
    played = [Placed(110.0, b"\x20" * 80)]
    assemble(made, 130.0, caller, played)
    # Trimmed to the sound: the caller until 110 ms, the app's audio from 110 to 120 ms.
    assert (made.status, made.offset_ms, made.ended_ms) == ("completed", 100.0, 130.0)
    assert made.left == b"\x10" * 80 + Q * 80
    assert made.right == Q * 80 + b"\x20" * 80
    assert made.duration_s == 1 and made.channels == 2
    with wave.open(io.BytesIO(made.wav())) as file:
        assert (file.getnchannels(), file.getnframes()) == (2, 160)
        samples = np.frombuffer(file.readframes(160), "<i2").reshape(-1, 2)
    assert np.array_equal(samples[:, 0], ulaw_to_linear(made.left))


def test_tracks_trim_and_mono() -> None:
    caller, played = [Placed(100.0, b"\x10" * 8)], [Placed(105.0, b"\x20" * 8)]
    inbound = recording(track="inbound", trim="do-not-trim", channels="mono")
    assemble(inbound, 110.0, caller, played)
    assert inbound.left == b"\x10" * 8 + Q * 72 and inbound.right == Q * 80
    assert inbound.channels == 1
    with wave.open(io.BytesIO(inbound.wav())) as file:
        assert file.getnchannels() == 1
    outbound = recording(track="outbound")
    assemble(outbound, 110.0, caller, played)
    assert (outbound.left, outbound.right, outbound.offset_ms) == (Q * 8, b"\x20" * 8, 105.0)


def test_a_recording_with_no_sound_is_absent() -> None:
    made = recording()
    assemble(made, 200.0, [], [])
    assert (made.status, made.left, made.duration_s) == ("absent", b"", 0)
    untrimmed = recording(trim="do-not-trim")
    assemble(untrimmed, 200.0, [], [])
    assert untrimmed.status == "absent" and len(untrimmed.left) == 800


def test_the_status_callback_fields() -> None:
    made = new_recording(
        RecordingSpec(source=SOURCE_API, channels="mono", track="both"),
        "RE" + "1" * 32,
        recording_url("https://api.twilio.com/", "AC1", "RE" + "1" * 32),
        0.0,
    )
    assemble(made, 1500.0, [Placed(0.0, b"\x10" * 12000)], [])
    params = callback_params(made, account_sid="AC1", call_sid="CA1", status="completed")
    assert params == {
        "AccountSid": "AC1",
        "CallSid": "CA1",
        "RecordingSid": "RE" + "1" * 32,
        "RecordingUrl": "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE" + "1" * 32,
        "RecordingStatus": "completed",
        "RecordingChannels": "1",
        "RecordingStartTime": params["RecordingStartTime"],
        "RecordingSource": "OutboundAPI",
        "RecordingTrack": "both",
        "RecordingDuration": "2",  # 1.5 s, rounded up
    }
    assert parsedate_to_datetime(params["RecordingStartTime"]).tzinfo is not None
    progress = callback_params(made, account_sid="AC1", call_sid="CA1", status="in-progress")
    assert "RecordingDuration" not in progress


# --- the recorder ----------------------------------------------------------------------------


async def test_the_recorder_starts_stops_and_announces() -> None:
    sent: list[tuple[str, str, str, str, dict[str, str]]] = []

    async def send(kind: str, event: str, url: str, method: str, params: dict[str, str]) -> None:
        sent.append((kind, event, url, method, params))

    recorder = CallRecorder(
        api_base_url="https://api", account_sid="AC1", call_sid="CA1", send=send
    )
    events = ("in-progress", "completed", "absent")
    first = recorder.start(
        RecordingSpec(name="a", status_callback="https://cb", status_callback_events=events), 0.0
    )
    second = recorder.start(
        RecordingSpec(status_callback="https://cb2", status_callback_method="GET"), 50.0
    )
    assert recorder.stop("a", 100.0) is first and recorder.stop("a", 120.0) is None
    assert recorder.stop(None, 120.0) is None and recorder.stop("b", 120.0) is None
    recorder.finish(200.0, [Placed(0.0, b"\x10" * 1600)], [])
    assert (first.ended_ms, second.ended_ms) == (100.0, 200.0)
    await recorder.announce()
    assert [(kind, event, url, method) for kind, event, url, method, _ in sent] == [
        ("recording-status", "in-progress", "https://cb", "POST"),
        ("recording-status", "completed", "https://cb", "POST"),
        ("recording-status", "completed", "https://cb2", "GET"),
    ]
    assert first.url == f"https://api/2010-04-01/Accounts/AC1/Recordings/{first.sid}"
    assert sent[1][4]["RecordingSid"] == first.sid and first.sid != second.sid
