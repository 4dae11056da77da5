"""Parsing what Twilio sends, the order of events on a stream, and what we send back."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.edge.twilio_protocol import (
    Connected,
    Dtmf,
    Mark,
    Media,
    Start,
    Stop,
    StreamState,
    TwilioEvent,
    TwilioStream,
    Unknown,
    clear_message,
    mark_message,
    media_message,
    parse_message,
)
from shared.errors import TwilioProtocolError
from tests.support import twilio_frames as tf

AUDIO = bytes(range(256)) * 2


def _parse(frame: dict[str, Any]) -> TwilioEvent:
    return parse_message(json.dumps(frame))


def _kind_of(text: str | bytes) -> str:
    with pytest.raises(TwilioProtocolError) as info:
        parse_message(text)
    return info.value.kind


# --- every message kind Twilio sends, in its documented shape ------------------------------


def test_connected() -> None:
    assert _parse(tf.connected()) == Connected(protocol="Call", version="1.0.0")


def test_start_carries_sids_tracks_format_and_custom_parameters() -> None:
    event = _parse(tf.start(token="v1.123.abc"))
    assert event == Start(
        stream_sid=tf.STREAM_SID,
        call_sid=tf.CALL_SID,
        account_sid=tf.ACCOUNT_SID,
        tracks=("inbound",),
        custom_parameters={"token": "v1.123.abc"},
        encoding="audio/x-mulaw",
        sample_rate=8000,
        channels=1,
    )


def test_start_without_custom_parameters_has_none() -> None:
    frame = tf.start()
    del frame["start"]["customParameters"]
    event = _parse(frame)
    assert isinstance(event, Start)
    assert event.custom_parameters == {}


def test_media_payload_is_decoded_once_to_raw_mulaw() -> None:
    event = _parse(tf.media(AUDIO, timestamp="1234"))
    assert event == Media(stream_sid=tf.STREAM_SID, timestamp_ms=1234, payload=AUDIO)


def test_media_from_the_docs_example_payload() -> None:
    frame = tf.media()
    frame["media"]["payload"] = "no+JhoaJjpzS"
    event = _parse(frame)
    assert isinstance(event, Media)
    assert event.payload == base64.b64decode("no+JhoaJjpzS")
    assert len(event.payload) == 9


def test_media_with_empty_payload_is_empty_audio() -> None:
    # Twilio never sends it, but it is harmless: it carries no audio (the edge publishes none).
    event = _parse(tf.media(b""))
    assert isinstance(event, Media)
    assert event.payload == b""


def test_media_timestamp_of_a_long_call() -> None:
    event = _parse(tf.media(timestamp="14400000"))  # four hours in
    assert isinstance(event, Media)
    assert event.timestamp_ms == 14_400_000


@pytest.mark.parametrize("digit", list("0123456789*#"))
def test_dtmf_every_key(digit: str) -> None:
    assert _parse(tf.dtmf(digit)) == Dtmf(stream_sid=tf.STREAM_SID, digit=digit)


@pytest.mark.parametrize("name", ["my label", "resp_abc:item_xyz:17", "", 'é "q" \\ 🙂'])
def test_mark_echo(name: str) -> None:
    assert _parse(tf.mark(name)) == Mark(stream_sid=tf.STREAM_SID, name=name)


def test_stop() -> None:
    assert _parse(tf.stop()) == Stop(stream_sid=tf.STREAM_SID, call_sid=tf.CALL_SID)


def test_stop_without_stop_object_still_stops_the_stream() -> None:
    frame = tf.stop()
    del frame["stop"]
    assert _parse(frame) == Stop(stream_sid=tf.STREAM_SID, call_sid="")


@pytest.mark.parametrize("event", ["close", "mystery", ""])
def test_unknown_event_is_reported_not_raised(event: str) -> None:
    # Twilio may add event types; the edge must not break on one (and there is no "close").
    assert parse_message(json.dumps({"event": event, "streamSid": tf.STREAM_SID})) == Unknown(event)


def test_parse_accepts_utf8_bytes() -> None:
    assert parse_message(orjson.dumps(tf.mark("ü"))) == Mark(tf.STREAM_SID, "ü")


# --- malformed input: always TwilioProtocolError, with a kind naming the fault -------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "{",
        '{"event": "media",}',
        "{'event': 'media'}",
        "NaN",
        '{"event": "media"} trailing',
        b"\xff\xfe\x00",
        b'{"event": "mark", "mark": {"name": "\xc3\x28"}}',  # invalid UTF-8
        "\ud800",  # lone surrogate
        "[" * 5000 + "]" * 5000,  # deeper than any parser should follow
    ],
)
def test_not_json(text: str | bytes) -> None:
    assert _kind_of(text) == "not_json"


@pytest.mark.parametrize("text", ["[]", "[{}]", "1", '"media"', "null", "true", "1.5"])
def test_not_an_object(text: str) -> None:
    assert _kind_of(text) == "not_object"


@pytest.mark.parametrize("frame", [{}, {"event": None}, {"event": 5}, {"event": ["media"]}])
def test_missing_event(frame: dict[str, Any]) -> None:
    assert _kind_of(json.dumps(frame)) == "missing_field"


Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: object) -> Mutation:
    *parents, leaf = path.split(".")

    def mutate(frame: dict[str, Any]) -> None:
        target = frame
        for key in parents:
            target = target[key]
        target[leaf] = value

    return mutate


def _delete(path: str) -> Mutation:
    *parents, leaf = path.split(".")

    def mutate(frame: dict[str, Any]) -> None:
        target = frame
        for key in parents:
            target = target[key]
        del target[leaf]

    return mutate


BUILDERS: dict[str, Callable[[], dict[str, Any]]] = {
    "start": tf.start,
    "media": tf.media,
    "dtmf": tf.dtmf,
    "mark": tf.mark,
    "stop": tf.stop,
}

MALFORMED: list[tuple[str, str, Mutation, str]] = [
    # media
    ("media", "no media object", _delete("media"), "missing_field"),
    ("media", "media is a list", _set("media", []), "bad_field"),
    ("media", "media is a string", _set("media", "AAAA"), "bad_field"),
    ("media", "no payload", _delete("media.payload"), "missing_field"),
    ("media", "null payload", _set("media.payload", None), "missing_field"),
    ("media", "numeric payload", _set("media.payload", 12), "bad_field"),
    ("media", "payload as a byte list", _set("media.payload", [1, 2]), "bad_field"),
    ("media", "payload not base64", _set("media.payload", "not base64!!"), "bad_base64"),
    ("media", "payload badly padded", _set("media.payload", "AAA"), "bad_base64"),
    ("media", "payload with a newline", _set("media.payload", "AAAA\nAAAA"), "bad_base64"),
    ("media", "payload with spaces", _set("media.payload", "AA AA"), "bad_base64"),
    ("media", "payload padded mid-way", _set("media.payload", "AA==AAAA"), "bad_base64"),
    ("media", "payload urlsafe alphabet", _set("media.payload", "__--"), "bad_base64"),
    ("media", "payload non-ascii", _set("media.payload", "ÿÿÿÿ"), "bad_base64"),
    ("media", "no timestamp", _delete("media.timestamp"), "missing_field"),
    ("media", "timestamp as number", _set("media.timestamp", 5), "bad_field"),
    ("media", "timestamp not digits", _set("media.timestamp", "five"), "bad_field"),
    ("media", "timestamp empty", _set("media.timestamp", ""), "bad_field"),
    ("media", "timestamp negative", _set("media.timestamp", "-5"), "bad_field"),
    ("media", "timestamp signed", _set("media.timestamp", "+5"), "bad_field"),
    ("media", "timestamp spaced", _set("media.timestamp", " 5 "), "bad_field"),
    ("media", "timestamp underscored", _set("media.timestamp", "1_000"), "bad_field"),
    ("media", "timestamp fraction", _set("media.timestamp", "5.5"), "bad_field"),
    ("media", "timestamp other digits", _set("media.timestamp", "٥"), "bad_field"),
    ("media", "timestamp superscript", _set("media.timestamp", "²"), "bad_field"),
    ("media", "timestamp huge", _set("media.timestamp", "9" * 30), "bad_field"),
    ("media", "timestamp enormous", _set("media.timestamp", "9" * 5000), "bad_field"),
    ("media", "outbound track", _set("media.track", "outbound"), "wrong_track"),
    ("media", "numeric track", _set("media.track", 1), "wrong_track"),
    ("media", "no streamSid", _delete("streamSid"), "missing_field"),
    ("media", "numeric streamSid", _set("streamSid", 1), "bad_field"),
    # start
    ("start", "no start object", _delete("start"), "missing_field"),
    ("start", "start is a string", _set("start", "start"), "bad_field"),
    ("start", "no streamSid", _delete("start.streamSid"), "missing_field"),
    ("start", "short streamSid", _set("start.streamSid", "MZ123"), "bad_field"),
    ("start", "call sid as streamSid", _set("start.streamSid", tf.CALL_SID), "bad_field"),
    ("start", "no callSid", _delete("start.callSid"), "missing_field"),
    ("start", "numeric callSid", _set("start.callSid", 42), "bad_field"),
    ("start", "bad callSid", _set("start.callSid", "CA" + "z" * 32), "bad_field"),
    ("start", "callSid with extra", _set("start.callSid", tf.CALL_SID + "0"), "bad_field"),
    ("start", "no accountSid", _delete("start.accountSid"), "missing_field"),
    (
        "start",
        "custom parameter not a string",
        _set("start.customParameters", {"token": 5}),
        "bad_field",
    ),
    ("start", "custom parameters a list", _set("start.customParameters", ["token"]), "bad_field"),
    ("start", "tracks a string", _set("start.tracks", "inbound"), "bad_field"),
    ("start", "tracks of numbers", _set("start.tracks", [1]), "bad_field"),
    ("start", "no mediaFormat", _delete("start.mediaFormat"), "missing_field"),
    ("start", "mediaFormat a string", _set("start.mediaFormat", "audio/x-mulaw"), "bad_field"),
    ("start", "PCM encoding", _set("start.mediaFormat.encoding", "audio/l16"), "bad_media_format"),
    ("start", "no encoding", _delete("start.mediaFormat.encoding"), "bad_media_format"),
    ("start", "16 kHz", _set("start.mediaFormat.sampleRate", 16000), "bad_media_format"),
    ("start", "rate as a string", _set("start.mediaFormat.sampleRate", "8000"), "bad_media_format"),
    ("start", "stereo", _set("start.mediaFormat.channels", 2), "bad_media_format"),
    # dtmf
    ("dtmf", "no dtmf object", _delete("dtmf"), "missing_field"),
    ("dtmf", "no digit", _delete("dtmf.digit"), "missing_field"),
    ("dtmf", "numeric digit", _set("dtmf.digit", 1), "bad_field"),
    ("dtmf", "letter", _set("dtmf.digit", "A"), "bad_field"),
    ("dtmf", "two digits", _set("dtmf.digit", "12"), "bad_field"),
    ("dtmf", "empty digit", _set("dtmf.digit", ""), "bad_field"),
    ("dtmf", "no streamSid", _delete("streamSid"), "missing_field"),
    # mark
    ("mark", "no mark object", _delete("mark"), "missing_field"),
    ("mark", "mark is a string", _set("mark", "my label"), "bad_field"),
    ("mark", "no name", _delete("mark.name"), "missing_field"),
    ("mark", "numeric name", _set("mark.name", 7), "bad_field"),
    ("mark", "no streamSid", _delete("streamSid"), "missing_field"),
    # stop
    ("stop", "no streamSid", _delete("streamSid"), "missing_field"),
    ("stop", "streamSid an object", _set("streamSid", {}), "bad_field"),
]


@pytest.mark.parametrize(
    ("event", "mutate", "kind"),
    [
        pytest.param(event, mutate, kind, id=f"{event}: {what}")
        for event, what, mutate, kind in MALFORMED
    ],
)
def test_malformed_frame(event: str, mutate: Mutation, kind: str) -> None:
    frame = BUILDERS[event]()
    mutate(frame)
    assert _kind_of(json.dumps(frame)) == kind


def test_huge_media_frame_is_decoded_exactly() -> None:
    audio = bytes(range(256)) * 4096  # 1 MiB: "any size", and no size-dependent failure
    event = _parse(tf.media(audio))
    assert isinstance(event, Media)
    assert event.payload == audio


# --- property: nothing Twilio could send raises anything but TwilioProtocolError -----------

_json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
_json = st.recursive(
    _json_leaf,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
_paths = {
    "start": ["start", "start.streamSid", "start.callSid", "start.accountSid", "start.tracks",
              "start.customParameters", "start.mediaFormat", "start.mediaFormat.encoding",
              "start.mediaFormat.sampleRate", "start.mediaFormat.channels", "streamSid", "event"],
    "media": ["media", "media.payload", "media.timestamp", "media.track", "streamSid", "event"],
    "dtmf": ["dtmf", "dtmf.digit", "streamSid", "event"],
    "mark": ["mark", "mark.name", "streamSid", "event"],
    "stop": ["stop", "stop.callSid", "streamSid", "event"],
}  # fmt: skip


def _check_parse(text: str | bytes) -> None:
    try:
        event = parse_message(text)
    except TwilioProtocolError as exc:
        assert exc.kind and exc.kind != "protocol"
    else:
        assert isinstance(event, Connected | Start | Media | Dtmf | Mark | Stop | Unknown)


@settings(max_examples=300, deadline=None)
@given(st.text() | st.binary())
def test_arbitrary_text_or_bytes_never_crash(text: str | bytes) -> None:
    _check_parse(text)


@settings(max_examples=300, deadline=None)
@given(
    event=st.sampled_from(sorted(_paths)),
    data=st.data(),
)
def test_mutated_real_frames_never_crash(event: str, data: st.DataObject) -> None:
    frame = copy.deepcopy(BUILDERS[event]())
    for path in data.draw(st.lists(st.sampled_from(_paths[event]), min_size=1, max_size=3)):
        try:
            if data.draw(st.booleans()):
                _delete(path)(frame)
            else:
                _set(path, data.draw(_json))(frame)
        except (KeyError, TypeError):
            pass  # a parent was already replaced by something that is not an object
    try:
        text = orjson.dumps(frame)
    except (TypeError, orjson.JSONEncodeError):
        return  # not representable in JSON (e.g. NaN is, but huge ints are not)
    _check_parse(text)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), st.integers(min_value=0, max_value=10**15 - 1))
def test_any_audio_survives_the_media_frame_exactly(audio: bytes, timestamp: int) -> None:
    event = _parse(tf.media(audio, timestamp=str(timestamp)))
    assert event == Media(tf.STREAM_SID, timestamp, audio)


# --- the order of events on one socket ------------------------------------------------------


def _events(*frames: dict[str, Any]) -> list[TwilioEvent]:
    return [_parse(frame) for frame in frames]


def test_a_whole_call_in_order_is_accepted() -> None:
    stream = TwilioStream()
    events = _events(
        tf.connected(), tf.start(), tf.media(), tf.dtmf(), tf.media(), tf.mark(), tf.stop()
    )
    assert [stream.accept(event) for event in events] == events
    assert stream.state is StreamState.STOPPED
    assert stream.stream_sid == tf.STREAM_SID


def _state(stream: TwilioStream) -> StreamState:
    return stream.state


def test_start_moves_to_streaming() -> None:
    stream = TwilioStream()
    assert _state(stream) is StreamState.AWAITING_START
    assert stream.stream_sid is None
    stream.accept(_parse(tf.start()))
    assert _state(stream) is StreamState.STREAMING
    assert stream.stream_sid == tf.STREAM_SID


@pytest.mark.parametrize(
    "frame", [tf.media(), tf.dtmf(), tf.mark(), tf.stop()], ids=lambda frame: str(frame["event"])
)
def test_anything_but_start_before_start(frame: dict[str, Any]) -> None:
    stream = TwilioStream()
    with pytest.raises(TwilioProtocolError) as info:
        stream.accept(_parse(frame))
    assert info.value.kind == "before_start"
    assert _state(stream) is StreamState.AWAITING_START
    stream.accept(_parse(tf.start()))  # the stream can still start afterwards
    assert _state(stream) is StreamState.STREAMING


def test_second_start_is_refused_and_the_first_stream_kept() -> None:
    stream = TwilioStream()
    stream.accept(_parse(tf.start()))
    other = "MZ" + "1" * 32
    with pytest.raises(TwilioProtocolError) as info:
        stream.accept(_parse(tf.start(stream_sid=other)))
    assert info.value.kind == "duplicate_start"
    assert stream.stream_sid == tf.STREAM_SID
    assert stream.accept(_parse(tf.media())) == _parse(tf.media())


@pytest.mark.parametrize(
    "frame",
    [tf.start(), tf.media(), tf.dtmf(), tf.mark(), tf.stop()],
    ids=lambda frame: str(frame["event"]),
)
def test_nothing_after_stop(frame: dict[str, Any]) -> None:
    stream = TwilioStream()
    stream.accept(_parse(tf.start()))
    stream.accept(_parse(tf.stop()))
    with pytest.raises(TwilioProtocolError) as info:
        stream.accept(_parse(frame))
    assert info.value.kind == "after_stop"
    assert stream.state is StreamState.STOPPED


@pytest.mark.parametrize("build", [tf.media, tf.dtmf, tf.mark, tf.stop])
def test_events_of_another_stream_are_refused(build: Callable[..., dict[str, Any]]) -> None:
    stream = TwilioStream()
    stream.accept(_parse(tf.start()))
    with pytest.raises(TwilioProtocolError) as info:
        stream.accept(_parse(build(stream_sid="MZ" + "2" * 32)))
    assert info.value.kind == "wrong_stream"
    assert stream.state is StreamState.STREAMING  # a foreign stop does not end ours


def test_connected_and_unknown_are_legal_in_every_state() -> None:
    stream = TwilioStream()
    harmless = [_parse(tf.connected()), Unknown("future-event")]
    for event in harmless:
        assert stream.accept(event) is event
    stream.accept(_parse(tf.start()))
    for event in harmless:
        assert stream.accept(event) is event
    stream.accept(_parse(tf.stop()))
    for event in harmless:
        assert stream.accept(event) is event


# --- what we send Twilio: exactly media, mark and clear, no extra fields --------------------


def test_media_message_shape_and_single_base64() -> None:
    text = media_message(tf.STREAM_SID, AUDIO)
    msg = json.loads(text)
    assert msg == {
        "event": "media",
        "streamSid": tf.STREAM_SID,
        "media": {"payload": base64.b64encode(AUDIO).decode("ascii")},
    }
    assert base64.b64decode(msg["media"]["payload"], validate=True) == AUDIO


def test_media_message_of_one_frame_is_216_base64_characters() -> None:
    msg = json.loads(media_message(tf.STREAM_SID, b"\xff" * 160))
    assert len(msg["media"]["payload"]) == 216
    assert "\n" not in msg["media"]["payload"]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=1000))
def test_media_message_roundtrips_any_audio(audio: bytes) -> None:
    msg = orjson.loads(media_message(tf.STREAM_SID, audio))
    assert set(msg) == {"event", "streamSid", "media"}
    assert set(msg["media"]) == {"payload"}
    assert base64.b64decode(msg["media"]["payload"], validate=True) == audio


@pytest.mark.parametrize(
    "name", ["resp_abc:item_xyz:17", "", 'quote " and \\ backslash', "line\nbreak", "ünï🙂"]
)
def test_mark_message_shape(name: str) -> None:
    msg = json.loads(mark_message(tf.STREAM_SID, name))
    assert msg == {"event": "mark", "streamSid": tf.STREAM_SID, "mark": {"name": name}}


def test_clear_message_shape() -> None:
    assert json.loads(clear_message(tf.STREAM_SID)) == {
        "event": "clear",
        "streamSid": tf.STREAM_SID,
    }


def test_our_mark_is_what_twilio_echoes_back() -> None:
    # Twilio echoes the mark with the same name; parsing the echo yields that name.
    echoed = json.loads(mark_message(tf.STREAM_SID, "resp_1:item_2:3"))
    echoed["sequenceNumber"] = "9"
    assert _parse(echoed) == Mark(tf.STREAM_SID, "resp_1:item_2:3")
