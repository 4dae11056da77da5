"""What the simulator puts on the wire is what the edge's own parser and signature check expect."""

from __future__ import annotations

import json

import pytest
from twilio.request_validator import RequestValidator

from services.call_sim.call import caller_frames
from services.call_sim.messages import (
    connected_message,
    mark_echo,
    media_message,
    start_message,
    stop_message,
)
from services.call_sim.routing import EdgeRing, new_sid, to_edge
from services.edge.signature import compute_signature, is_valid_signature
from services.edge.twilio_protocol import (
    CALL_SID_RE,
    STREAM_SID_RE,
    Connected,
    Mark,
    Media,
    Start,
    Stop,
    TwilioStream,
    parse_message,
)
from services.edge.urls import PublicUrls

TOKEN = "test-auth-token"
PUBLIC = "https://edge.switchboard.example"


def test_twilio_messages_parse_on_the_edge_in_order() -> None:
    sid, call, account = new_sid("MZ"), new_sid("CA"), new_sid("AC")
    assert STREAM_SID_RE.fullmatch(sid) and CALL_SID_RE.fullmatch(call)
    assert len(account) == 34 and account.startswith("AC")
    frames = [
        connected_message(),
        start_message(1, sid, account, call, {"token": "t"}),
        media_message(2, sid, 1, 0, b"\xff\x7f\x00"),
        mark_echo(3, sid, "m1"),
        stop_message(4, sid, account, call),
    ]
    stream = TwilioStream()
    events = [stream.accept(parse_message(frame)) for frame in frames]
    assert events == [
        Connected("Call", "1.0.0"),
        Start(sid, call, account, ("inbound",), {"token": "t"}, "audio/x-mulaw", 8000, 1),
        Media(sid, 0, b"\xff\x7f\x00"),
        Mark(sid, "m1"),
        Stop(sid, call),
    ]
    media = json.loads(frames[2])
    assert media == {
        "event": "media",
        "sequenceNumber": "2",
        "media": {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": "/38A"},
        "streamSid": sid,
    }
    assert json.loads(frames[3]) == {
        "event": "mark",
        "sequenceNumber": "3",
        "streamSid": sid,
        "mark": {"name": "m1"},
    }


def test_twilio_request_validator_matches_the_documented_vector() -> None:
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    expected = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    assert RequestValidator("12345").compute_signature(url, params) == expected
    assert compute_signature("12345", url, params.items()) == expected


def test_webhook_and_upgrade_signatures_pass_the_edges_check() -> None:
    urls = PublicUrls(PUBLIC)
    params = {"CallSid": new_sid("CA"), "From": "+15005550006", "CallStatus": "ringing"}
    validator = RequestValidator(TOKEN)
    webhook = validator.compute_signature(urls.voice, params)
    assert is_valid_signature([TOKEN], urls.voice, list(params.items()), webhook)
    assert not is_valid_signature(["other"], urls.voice, list(params.items()), webhook)
    # The upgrade: the wss URL from the TwiML, no parameters.
    upgrade = validator.compute_signature(urls.media, {})
    assert urls.media == "wss://edge.switchboard.example/twilio/media"
    assert is_valid_signature([TOKEN], urls.media, [], upgrade)
    # Signing the loopback URL the socket really goes to is the classic mistake: refused.
    loopback = validator.compute_signature("ws://127.0.0.1:8080/twilio/media", {})
    assert not is_valid_signature([TOKEN], urls.media, [], loopback)


@pytest.mark.parametrize(
    ("url", "public", "edge", "expected"),
    [
        (
            "wss://edge.switchboard.example/twilio/media",
            PUBLIC,
            "http://127.0.0.1:8080",
            "ws://127.0.0.1:8080/twilio/media",
        ),
        (
            "wss://edge.switchboard.example/twilio/media",
            PUBLIC,
            "https://10.0.0.5",
            "wss://10.0.0.5/twilio/media",
        ),
        (
            "https://edge.switchboard.example/twilio/voice/resume?x=1",
            PUBLIC,
            "http://127.0.0.1:9/",
            "http://127.0.0.1:9/twilio/voice/resume?x=1",
        ),
        (  # a proxy strips the public path prefix
            "https://example.com/sb/twilio/voice",
            "https://example.com/sb",
            "http://127.0.0.1:9",
            "http://127.0.0.1:9/twilio/voice",
        ),
    ],
)
def test_public_urls_map_onto_the_edge(url: str, public: str, edge: str, expected: str) -> None:
    assert to_edge(url, public, edge) == expected


def test_edge_ring_rotates_and_wraps() -> None:
    ring = EdgeRing(["a", "b"])
    assert (ring.current, ring.rotate(), ring.rotate(), len(ring)) == ("a", "b", "a", 2)
    with pytest.raises(ValueError):
        EdgeRing([])


def test_caller_frames_pad_the_last_frame_and_add_the_hold() -> None:
    frames = caller_frames(b"\x01" * 170, hold_s=0.05)
    assert [len(f) for f in frames] == [160] * 4  # 2 audio frames + 50 ms → 2.5 → 2 frames
    assert frames[1] == b"\x01" * 10 + b"\xff" * 150
    assert frames[2] == frames[3] == b"\xff" * 160
    assert caller_frames(b"", 0) == []
