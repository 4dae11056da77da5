"""μ-law codec and WAV helpers (docs/protocols.md §5.1)."""

from __future__ import annotations

import warnings
import wave
from pathlib import Path

import numpy as np
import pytest

from shared import audio


def _reference_encode(sample: int) -> int:
    """The classic encoder, step by step as docs/protocols.md §5.1 gives it."""
    sign = 0x80 if sample < 0 else 0
    m = min(abs(sample), 32635) + 0x84
    exponent = m.bit_length() - 1 - 7
    mantissa = (m >> (exponent + 3)) & 0x0F
    return ~(sign | exponent << 4 | mantissa) & 0xFF


def _reference_decode(byte: int) -> int:
    b = ~byte & 0xFF
    sign, e, q = b & 0x80, (b >> 4) & 7, b & 0x0F
    mag = (((q << 3) + 0x84) << e) - 0x84
    return -mag if sign else mag


@pytest.mark.parametrize(
    ("code", "sample"),
    [(0xFF, 0), (0x7F, 0), (0xFE, 8), (0x7E, -8), (0x80, 32124), (0x00, -32124)],
)
def test_decode_standard_values(code: int, sample: int) -> None:
    assert int(audio.ulaw_to_linear(bytes([code]))[0]) == sample


def test_decode_matches_reference_for_all_codes() -> None:
    decoded = audio.ulaw_to_linear(bytes(range(256)))
    assert decoded.dtype == np.int16
    assert [int(v) for v in decoded] == [_reference_decode(b) for b in range(256)]


def test_decode_agrees_with_audioop() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")
    expected = np.frombuffer(audioop.ulaw2lin(bytes(range(256)), 2), dtype="<i2")
    assert np.array_equal(audio.ulaw_to_linear(bytes(range(256))), expected)


def test_encode_matches_reference_for_every_16_bit_sample() -> None:
    samples = list(range(-32768, 32768))
    encoded = audio.linear_to_ulaw(samples)
    assert len(encoded) == 65536
    mismatches = [s for s, b in zip(samples, encoded, strict=True) if b != _reference_encode(s)]
    assert mismatches == []


@pytest.mark.parametrize(
    ("sample", "code"),
    [(0, 0xFF), (-1, 0x7F), (32767, 0x80), (-32768, 0x00), (8, 0xFE), (-8, 0x7E)],
)
def test_encode_known_values(sample: int, code: int) -> None:
    assert audio.linear_to_ulaw([sample]) == bytes([code])


def test_encode_clips_values_outside_int16() -> None:
    assert audio.linear_to_ulaw([100_000, -100_000]) == bytes([0x80, 0x00])


def test_decode_then_encode_is_identity_except_negative_zero() -> None:
    codes = bytes(range(256))
    round_trip = audio.linear_to_ulaw(audio.ulaw_to_linear(codes))
    differing = [c for c, r in zip(codes, round_trip, strict=True) if c != r]
    assert differing == [0x7F]
    assert round_trip[0x7F] == 0xFF


def test_encode_error_is_within_one_quantisation_step() -> None:
    samples = np.arange(-32124, 32125, 7)
    decoded = audio.ulaw_to_linear(audio.linear_to_ulaw(samples)).astype(np.int64)
    # The largest step (exponent 7) is 1024; the decoder returns the middle of the step.
    assert np.max(np.abs(decoded - samples)) <= 1024
    quiet = np.arange(-100, 101)
    quiet_decoded = audio.ulaw_to_linear(audio.linear_to_ulaw(quiet)).astype(np.int64)
    assert np.max(np.abs(quiet_decoded - quiet)) <= 8


def test_empty_input() -> None:
    assert audio.linear_to_ulaw([]) == b""
    assert audio.ulaw_to_linear(b"").size == 0


def test_frame_constants_and_conversions() -> None:
    assert audio.SAMPLE_RATE == 8000
    assert audio.FRAME_BYTES == 160
    assert audio.ms_to_bytes(20) == 160
    assert audio.bytes_to_ms(160) == 20
    assert audio.bytes_to_ms(167) == 20  # rounded down
    assert audio.bytes_to_ms(7) == 0


def test_silence_is_positive_zero() -> None:
    frame = audio.silence(audio.FRAME_BYTES)
    assert frame == b"\xff" * 160
    assert not audio.ulaw_to_linear(frame).any()
    assert audio.silence(0) == b""


def test_wav_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "all.wav"
    codes = bytes(range(256)) * 3
    audio.write_ulaw_wav(path, codes)
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        assert wav.getnframes() == len(codes)
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    assert np.array_equal(pcm, audio.ulaw_to_linear(codes))
    expected = codes.replace(b"\x7f", b"\xff")  # negative zero comes back as positive zero
    assert audio.read_wav_as_ulaw(path) == expected


def test_wav_round_trip_of_speech_like_audio(tmp_path: Path) -> None:
    t = np.arange(8000) / 8000
    ulaw = audio.linear_to_ulaw((np.sin(2 * np.pi * 440 * t) * 12000).astype(np.int16))
    path = tmp_path / "tone.wav"
    audio.write_ulaw_wav(path, ulaw)
    assert audio.read_wav_as_ulaw(path) == ulaw


@pytest.mark.parametrize(("channels", "width", "rate"), [(2, 2, 8000), (1, 1, 8000), (1, 2, 16000)])
def test_read_wav_rejects_other_formats(
    tmp_path: Path, channels: int, width: int, rate: int
) -> None:
    path = tmp_path / "other.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(b"\x00" * 64)
    with pytest.raises(ValueError, match="16-bit mono 8000 Hz"):
        audio.read_wav_as_ulaw(path)


def test_int16_samples_encode_as_any_other_integers() -> None:
    every = np.arange(-32768, 32768, dtype=np.int16)
    assert audio.linear_to_ulaw(every) == audio.linear_to_ulaw(every.astype(np.int64))
