"""The strict checker of what an edge sends to Twilio."""

from __future__ import annotations

import base64
import json
import random

import numpy as np
import pytest

from services.call_sim.outbound_check import (
    OutClear,
    OutMark,
    OutMedia,
    audio_fault,
    check_outbound,
)
from services.call_sim.report import ASSET_AUDIO
from services.edge.twilio_protocol import clear_message, mark_message, media_message
from shared.audio import ulaw_to_linear

SID = "MZ" + "0" * 32
OTHER = "MZ" + "1" * 32
SPEECH = ASSET_AUDIO.read_bytes()


def _kinds(frame: str, frame_bytes: int | None = 160) -> list[str]:
    return [v.kind for v in check_outbound(frame, SID, frame_bytes=frame_bytes).violations]


def _media(payload: object, **extra: object) -> str:
    return json.dumps({"event": "media", "streamSid": SID, "media": {"payload": payload}, **extra})


def test_the_edges_own_messages_pass() -> None:
    frame = SPEECH[8000:8160]
    assert check_outbound(media_message(SID, frame), SID) == check_outbound(
        _media(base64.b64encode(frame).decode()), SID
    )
    result = check_outbound(media_message(SID, frame), SID)
    assert result.message == OutMedia(frame) and result.violations == ()
    assert check_outbound(mark_message(SID, "r1:i2:3"), SID).message == OutMark("r1:i2:3")
    assert check_outbound(clear_message(SID), SID).message == OutClear()


def test_every_speech_frame_of_the_asset_passes_as_mulaw() -> None:
    for start in range(0, len(SPEECH) - 160, 160):
        assert audio_fault(SPEECH[start : start + 160]) is None, start


def test_random_bytes_pass() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        assert audio_fault(rng.randbytes(160)) is None


@pytest.mark.parametrize(
    ("frame", "kind"),
    [
        (b'{"event":"clear"}', "binary_frame"),
        ("{nope", "not_json"),
        ("[1, 2]", "not_object"),
        (json.dumps({"event": "close", "streamSid": SID}), "unknown_event"),
        (json.dumps({"streamSid": SID}), "unknown_event"),
        (json.dumps({"event": "clear"}), "missing_field"),
        (json.dumps({"event": "media", "streamSid": SID}), "missing_field"),
        (json.dumps({"event": "mark", "streamSid": SID}), "missing_field"),  # OpenAI demo's bug
        (json.dumps({"event": "mark", "streamSid": SID, "mark": {}}), "missing_field"),
        (json.dumps({"event": "media", "streamSid": SID, "media": {}}), "missing_field"),
        (
            json.dumps({"event": "media", "streamSid": SID, "media": {"playload": "//8="}}),
            "missing_field",
        ),
        (json.dumps({"event": "clear", "streamSid": SID, "sequenceNumber": "3"}), "extra_field"),
        (_media("/////w==", track="outbound"), "extra_field"),
        (
            json.dumps(
                {"event": "media", "streamSid": SID, "media": {"payload": "//8=", "track": "x"}}
            ),
            "extra_field",
        ),
        (json.dumps({"event": "clear", "streamSid": OTHER}), "wrong_stream"),
        (mark_message(OTHER, "m"), "wrong_stream"),
        (json.dumps({"event": "mark", "streamSid": SID, "mark": {"name": ""}}), "bad_field"),
        (json.dumps({"event": "mark", "streamSid": SID, "mark": "m"}), "bad_field"),
        (_media(12), "bad_field"),
        (_media("b'\\xff\\xff'"), "bad_base64"),
        (_media("////"[:3]), "bad_base64"),
        (_media("__--"), "bad_base64"),  # URL-safe alphabet
        (_media(""), "empty_payload"),
    ],
)
def test_messages_twilio_would_drop(frame: str | bytes, kind: str) -> None:
    result = check_outbound(frame, SID)
    assert result.message is None
    assert [v.kind for v in result.violations] == [kind]


def test_double_base64_is_flagged_but_delivered() -> None:
    frame = SPEECH[8000:8160]
    twice = base64.b64encode(base64.b64encode(frame)).decode()
    result = check_outbound(_media(twice), SID, frame_bytes=None)
    assert [v.kind for v in result.violations] == ["double_base64"]
    assert result.message == OutMedia(base64.b64encode(frame))


def test_pcm16_is_not_mulaw() -> None:
    pcm = np.repeat(ulaw_to_linear(SPEECH), 3).astype("<i2").tobytes()  # 24 kHz, as the default
    flagged = 0
    for start in range(0, 160 * 200, 160):
        payload = base64.b64encode(pcm[start : start + 160]).decode()
        kinds = _kinds(_media(payload))
        assert kinds in ([], ["not_mulaw"])
        flagged += kinds == ["not_mulaw"]
    assert flagged > 100
    silence = base64.b64encode(bytes(160)).decode()
    assert _kinds(_media(silence)) == ["not_mulaw"]


def test_file_headers_are_not_mulaw() -> None:
    for header in (b"RIFF\x24\x00\x00\x00WAVEfmt ", b".snd\x00\x00\x00\x18"):
        payload = base64.b64encode(header + SPEECH[: 160 - len(header)]).decode()
        assert _kinds(_media(payload)) == ["header"]


def test_frame_size() -> None:
    payload = base64.b64encode(SPEECH[:100]).decode()
    assert _kinds(_media(payload)) == ["frame_size"]
    assert _kinds(_media(payload), frame_bytes=None) == []
    assert _kinds(_media(base64.b64encode(SPEECH[:160]).decode())) == []
    assert _kinds(_media(base64.b64encode(SPEECH[:800]).decode())) == []  # five whole frames
    assert _kinds(_media(base64.b64encode(SPEECH[:900]).decode())) == ["frame_size"]
