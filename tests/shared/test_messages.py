"""Redis message schemas: round trips, and every malformed entry becomes a DecodeError."""

from __future__ import annotations

import dataclasses

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared import messages
from shared.errors import DecodeError, ProtocolError
from shared.messages import (
    AudioDone,
    CallAnswered,
    CallDispatch,
    CallStopped,
    ClearPlayback,
    DtmfPressed,
    Hangup,
    InboundAudio,
    MarkPlayed,
    Message,
    OutboundAudio,
    PlaybackMark,
    StreamDetached,
    StreamStarted,
    decode,
    encode,
)

EXAMPLES: list[Message] = [
    CallDispatch("CA1", "new", 1_700_000_000.25),
    StreamStarted("MZ1", "edge-1", 1.5),
    StreamDetached("edge-1", "socket closed"),
    InboundAudio(b"\xff" * 160, 20, 2.0),
    MarkPlayed("item_1:3"),
    DtmfPressed("#"),
    CallStopped("stop"),
    CallAnswered("machine_end_beep", 4200),
    OutboundAudio(bytes(range(256)), "item_1", 3.0),
    PlaybackMark("item_1:4"),
    AudioDone("item_1"),
    ClearPlayback("item_1"),
    Hangup("model ended the call"),
]


def test_examples_cover_every_message_type() -> None:
    assert {type(m) for m in EXAMPLES} == set(messages._MESSAGE_TYPES)
    tags = [cls.TAG for cls in messages._MESSAGE_TYPES]
    assert len(set(tags)) == len(tags)


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(message: Message) -> None:
    data = encode(message)
    assert isinstance(data, bytes)
    decoded = decode(data)
    assert type(decoded) is type(message)
    assert decoded == message


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
def test_wire_layout_is_tag_version_fields(message: Message) -> None:
    values = msgpack.unpackb(encode(message), raw=False)
    assert values[0] == message.TAG
    assert values[1] == 1
    assert values[2:] == [getattr(message, f.name) for f in dataclasses.fields(message)]


def test_audio_travels_as_msgpack_bin_not_str() -> None:
    data = encode(InboundAudio(b"\x00\x01\xfe", 0, 0.0))
    # bin 8 marker (0xc4), length 3, then the raw bytes: no base64, no str.
    assert b"\xc4\x03\x00\x01\xfe" in data


def test_float_field_accepts_an_integer_on_the_wire() -> None:
    data = msgpack.packb([CallDispatch.TAG, 1, "CA1", "new", 12])
    assert decode(data) == CallDispatch("CA1", "new", 12)


_text = st.text(max_size=20)
_FIELD_STRATEGIES: dict[type, st.SearchStrategy[object]] = {
    str: _text,
    bytes: st.binary(max_size=400),
    int: st.integers(min_value=-(2**63), max_value=2**64 - 1),
    float: st.floats(allow_nan=False),
}


def _message_strategy(cls: type[Message]) -> st.SearchStrategy[Message]:
    types = messages._SCHEMAS[cls.TAG][1]
    return st.builds(cls, *(_FIELD_STRATEGIES[t] for t in types))


@given(st.one_of(*(_message_strategy(cls) for cls in messages._MESSAGE_TYPES)))
def test_round_trip_property(message: Message) -> None:
    assert decode(encode(message)) == message


def _raw(*values: object) -> bytes:
    packed: bytes = msgpack.packb(list(values), use_bin_type=True)
    return packed


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "not a msgpack message"),
        (b"\xc1", "not a msgpack message"),  # never-used msgpack byte
        (b"\x93\x01", "not a msgpack message"),  # truncated array
        (_raw(12, 1, "x") + b"\x00", "not a msgpack message"),  # trailing data
        (msgpack.packb({"tag": 1}), "expected \\[tag, version, ...\\]"),
        (msgpack.packb(12), "expected \\[tag, version, ...\\]"),
        (msgpack.packb("hello"), "expected \\[tag, version, ...\\]"),
        (_raw(12), "expected \\[tag, version, ...\\]"),
        (_raw(), "expected \\[tag, version, ...\\]"),
        (_raw(99, 1, "x"), "unknown message tag 99"),
        (_raw("12", 1, "x"), "unknown message tag"),
        (_raw(True, 1, "x"), "unknown message tag"),  # True == 1 but is not a tag
        (_raw(12.0, 1, "x"), "unknown message tag"),
        (_raw(None, 1, "x"), "unknown message tag"),
        (_raw(12, 2, "x"), "MarkPlayed: unsupported schema version 2"),
        (_raw(12, 0, "x"), "unsupported schema version"),
        (_raw(12, "1", "x"), "unsupported schema version"),
        (_raw(12, None, "x"), "unsupported schema version"),
        (_raw(12, 1), "MarkPlayed: expected 1 fields, got 0"),
        (_raw(12, 1, "x", "y"), "MarkPlayed: expected 1 fields, got 2"),
        (_raw(12, 1, b"x"), "MarkPlayed.name: expected str, got bytes"),
        (_raw(12, 1, 5), "MarkPlayed.name: expected str, got int"),
        (_raw(11, 1, "not bytes", 0, 0.0), "InboundAudio.audio: expected bytes, got str"),
        (_raw(11, 1, b"\xff", 1.5, 0.0), "InboundAudio.twilio_ms: expected int, got float"),
        (_raw(11, 1, b"\xff", True, 0.0), "InboundAudio.twilio_ms: expected int, got bool"),
        (_raw(11, 1, b"\xff", 0, "now"), "InboundAudio.sent_at: expected float, got str"),
        (_raw(11, 1, b"\xff", 0, None), "InboundAudio.sent_at: expected float, got NoneType"),
        (_raw(1, 1, "CA1", ["new"], 0.0), "CallDispatch.reason: expected str, got tuple"),
        (_raw(1, 1, "CA1", {"a": 1}, 0.0), "CallDispatch.reason: expected str, got dict"),
        (b"\x93\x0c\x01\xa2\xff\xfe", "not a msgpack message"),  # str that is not UTF-8
        (b"\x81\x01\x02", "not a msgpack message"),  # map with an int key
    ],
)
def test_malformed_entries_raise_decode_error(data: bytes, match: str) -> None:
    with pytest.raises(DecodeError, match=match) as info:
        decode(data)
    assert info.value.kind == "bad_message"
    assert isinstance(info.value, ProtocolError)


def test_version_must_be_the_integer_one() -> None:
    # 1.0 and True compare equal to 1 but are not the schema version.
    for version in (1.0, True):
        with pytest.raises(DecodeError, match="unsupported schema version"):
            decode(_raw(12, version, "x"))


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_anything_but_decode_error(data: bytes) -> None:
    try:
        message = decode(data)
    except DecodeError:
        return
    # Byte comparison, so that a NaN timestamp still counts as a faithful round trip.
    assert encode(decode(encode(message))) == encode(message)


_msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=10)
    | st.binary(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)


@given(
    st.sampled_from([cls.TAG for cls in messages._MESSAGE_TYPES]) | st.integers(-5, 30),
    st.sampled_from([1, 1, 1, 0, 2, 1.0]),
    st.lists(_msgpack_values, max_size=6),
)
def test_well_formed_msgpack_with_wrong_fields_gives_decode_error(
    tag: int, version: int | float, body: list[object]
) -> None:
    data = _raw(tag, version, *body)
    try:
        message = decode(data)
    except DecodeError:
        return
    # Anything accepted is exactly a valid message of the right type.
    assert type(message).TAG == tag
    assert version == 1 and type(version) is int
    assert encode(decode(encode(message))) == encode(message)
