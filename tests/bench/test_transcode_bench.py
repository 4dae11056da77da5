"""The transcoder bench: its linear resampler, its figures and what they show of libsoxr."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.bench.transcode import (
    LINEAR,
    RESAMPLERS,
    SNR_CAP_DB,
    LinearDown,
    LinearUp,
    alias_attenuation_db,
    make_transcoder,
    measure,
    snr_db,
    table,
    up_pcm,
)
from services.doctor.corpus import Signal, asset_speech, to_ulaw
from services.realtime_worker.transcode import QUALITIES
from shared.audio import ulaw_to_linear


def _speech(seconds: float = 1.0) -> Signal:
    return asset_speech()["reply.ulaw"][: int(seconds * 8000)]


def test_the_naive_downsampler_folds_6_khz_into_the_band_and_soxr_hq_does_not() -> None:
    # Every third sample of a 6 kHz tone at 24 kHz is a full-scale 2 kHz tone at 8 kHz.
    assert alias_attenuation_db(LINEAR, 0.25) < 1.0
    # HQ's stop band is deep enough that only its int16 output noise is left.
    assert alias_attenuation_db("HQ", 0.25) > 80.0


@pytest.mark.parametrize("name", RESAMPLERS)
def test_chunked_streaming_matches_one_shot(name: str) -> None:
    ulaw = to_ulaw(_speech())
    chunked, whole = make_transcoder(name), make_transcoder(name)
    parts = b"".join(chunked.to_model(ulaw[i : i + 160]) for i in range(0, len(ulaw), 160))
    one = whole.to_model(ulaw)
    assert len(parts) == len(one) >= 2 * 2 * len(ulaw)  # at most a third held back here
    diff = np.abs(
        np.frombuffer(parts, "<i2").astype(np.int32) - np.frombuffer(one, "<i2").astype(np.int32)
    )
    # No click at the frame borders: libsoxr's int16 output is dithered (±1 LSB), no more.
    assert diff.max() <= (0 if name == LINEAR else 2)

    pcm = up_pcm(make_transcoder(name), ulaw).astype("<i2").tobytes()
    chunked, whole = make_transcoder(name), make_transcoder(name)
    sizes, out, offset = (4801, 333, 1, 4800, 7001), [], 0
    for k in range(len(pcm)):
        if offset >= len(pcm):
            break
        out.append(chunked.to_caller(pcm[offset : offset + sizes[k % len(sizes)]]))
        offset += sizes[k % len(sizes)]
    streamed = b"".join(out) + chunked.finish_reply()
    one_shot = whole.to_caller(pcm) + whole.finish_reply()
    assert len(streamed) == len(one_shot) == len(ulaw)
    snr, lag = snr_db(ulaw_to_linear(one_shot), ulaw_to_linear(streamed), 5)
    # Dither again: a sample near a μ-law decision level may land on either code.
    assert lag == 0 and snr >= (SNR_CAP_DB if name == LINEAR else 45.0)


def test_linear_up_streams_exactly_what_np_interp_gives_at_once() -> None:
    x = np.random.default_rng(3).integers(-20000, 20000, 1001).astype(np.int16)
    up = LinearUp()
    sizes = (160, 1, 7, 333)
    parts, offset, k = [], 0, 0
    while offset < len(x):
        parts.append(up.resample_chunk(x[offset : offset + sizes[k % 4]]))
        offset, k = offset + sizes[k % 4], k + 1
    parts.append(up.resample_chunk(x[:0], last=True))
    at = np.arange(3 * len(x)) / 3
    expected = np.round(np.interp(at, np.arange(len(x)), x)).astype(np.int16)
    assert np.array_equal(np.concatenate(parts), expected)
    down = LinearDown()
    back = np.concatenate([down.resample_chunk(c) for c in np.array_split(expected, 17)])
    assert np.array_equal(back, x)


def test_snr_finds_a_known_shift() -> None:
    x = np.sin(np.arange(2000) * 0.05) * 1000
    snr, lag = snr_db(x, np.concatenate([np.zeros(3), x[:-3]]), 10)
    assert lag == 3 and snr == SNR_CAP_DB
    snr, lag = snr_db(x, x + 10, 10)
    assert lag == 0 and snr == pytest.approx(10 * math.log10(np.mean(x[10:-10] ** 2) / 100))


def test_measure_gives_a_finite_row_for_every_resampler() -> None:
    rows = measure({"reply": _speech(1.5)}, seconds=0.5)
    assert [r.resampler for r in rows] == [*QUALITIES, LINEAR]
    for row in rows:
        assert all(math.isfinite(v) for v in row.numbers()), row
        assert row.round_trip_lags == [0]  # the soxr streams are delay-compensated
    by = {r.resampler: r for r in rows}
    linear, hq = by[LINEAR], by["HQ"]
    # At exactly 3:1 the linear round trip gives back every sample; its images and aliases
    # cost it against the ideal, where HQ's filters do far better.
    assert linear.round_trip_speech_db == SNR_CAP_DB
    assert linear.up_speech_db < 25 < 35 < hq.up_speech_db
    assert linear.down_speech_db < 25 < 35 < hq.down_speech_db
    assert linear.held_down_ms == 0 < hq.held_down_ms
    text = table(rows)
    assert all(name in text for name in RESAMPLERS) and "lossless" in text
