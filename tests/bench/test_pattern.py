"""The frame pattern names its call and frame, and any altered byte is caught."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.bench.pattern import FRAME_BYTES, decode_frame, encode_frame, is_exact

U32 = st.integers(min_value=0, max_value=2**32 - 1)


@given(U32, U32)
def test_a_frame_round_trips(call: int, seq: int) -> None:
    frame = encode_frame(call, seq)
    assert len(frame) == FRAME_BYTES
    assert decode_frame(frame) == (call, seq)
    assert is_exact(frame, call, seq)


def test_frames_differ_between_calls_and_sequence_numbers() -> None:
    frames = {encode_frame(call, seq)[10:] for call in range(20) for seq in range(1, 50)}
    assert len(frames) == 20 * 49  # the random bodies differ too, not only the headers


@pytest.mark.parametrize("position", [0, 1, 5, 9, 10, 80, FRAME_BYTES - 1])
def test_any_flipped_byte_is_caught(position: int) -> None:
    frame = bytearray(encode_frame(7, 1234))
    frame[position] ^= 0x01
    named = decode_frame(bytes(frame))
    assert named is None or not is_exact(bytes(frame), *named) or named != (7, 1234)
    assert not is_exact(bytes(frame), 7, 1234)


def test_truncated_swapped_or_foreign_frames_are_not_ours() -> None:
    frame = encode_frame(3, 9)
    assert decode_frame(frame[:-1]) is None
    assert decode_frame(frame + b"\x00") is None
    assert decode_frame(b"\xff" * FRAME_BYTES) is None  # μ-law silence
    assert not is_exact(frame, 4, 9)
    assert not is_exact(frame, 3, 10)
    # Two frames' halves glued together name the first frame but are not it.
    glued = frame[:80] + encode_frame(3, 10)[80:]
    assert decode_frame(glued) == (3, 9)
    assert not is_exact(glued, 3, 9)
