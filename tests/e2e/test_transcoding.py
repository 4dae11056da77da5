"""Transcoding mode (REALTIME_AUDIO_FORMAT=pcm16) against a simulated backend that speaks only
PCM16 24 kHz: the caller's μ-law goes up to 24 kHz, the simulator echoes the PCM unchanged, and
the worker brings it back to μ-law 8 kHz. Not bit-exact by nature, so the test measures what a
listener would notice: the level of the error, and clicks or phase jumps at chunk borders."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from services.call_sim import place_call
from shared.audio import linear_to_ulaw, ulaw_to_linear
from tests.support.calls import CALLER_AUDIO, wait_for_sessions
from tests.support.stack import StackFactory, call_config

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

TONE_HZ = 440.0  # 18.18 samples per period: no chunk border falls on the same phase twice
TONE_S = 3.0
#: The least signal-to-error ratio accepted over the echoed tone, in dB. μ-law's own
#: quantisation noise is about 38 dB below a tone at this level; what transcoding adds is
#: measured by ``python -m services.bench.transcode``.
MIN_SNR_DB = 30.0
#: Every 20 ms window of the echoed tone must be this far above its error: a click or a phase
#: jump at a chunk border (a resampler restarted per chunk, a dropped or doubled sample) shows
#: up as one bad window.
MIN_WINDOW_SNR_DB = 25.0

Floats = npt.NDArray[np.float64]


#: Sent before the tone, to find it in what comes back: a periodic tone alone would match at
#: every period.
MARKER = linear_to_ulaw(np.random.default_rng(7).normal(0, 4000, 2000).round())


def tone() -> bytes:
    t = np.arange(int(TONE_S * 8000)) / 8000
    return linear_to_ulaw(np.round(8000 * np.sin(2 * np.pi * TONE_HZ * t)))


def find_start(received: Floats, pattern: Floats) -> int:
    """Where ``pattern`` begins in ``received``."""
    scores = np.correlate(received, pattern, mode="valid")
    return int(np.argmax(scores))


def snr_db(signal: Floats, error: Floats) -> float:
    return float(10 * np.log10(np.sum(signal**2) / max(np.sum(error**2), 1e-9)))


async def test_the_caller_hears_the_echo_through_a_pcm16_backend_without_clicks(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(
        workers=1,
        sim_mode="echo",
        sim_args=["--audio-format", "pcm16"],
        worker_env={"REALTIME_AUDIO_FORMAT": "pcm16"},
    )
    sent_tone = tone()
    audio = MARKER + sent_tone + CALLER_AUDIO[:16000]
    report = await place_call(call_config(stack, audio, hold_s=1.5))

    assert report.problems() == []
    worker_log = stack.workers[0].log()
    assert "transcoding: caller μ-law 8 kHz ↔ model PCM16 24 kHz (libsoxr HQ)" in worker_log
    assert "ending the call" not in worker_log

    sent = ulaw_to_linear(sent_tone).astype(np.float64)
    received = ulaw_to_linear(report.received_audio).astype(np.float64)
    start = find_start(received, ulaw_to_linear(MARKER).astype(np.float64)) + len(MARKER)
    echoed = received[start : start + len(sent)]
    assert len(echoed) == len(sent), "the whole tone came back"

    # Level of the error against what the caller sent (edges of the tone left out: the
    # resamplers' filters ring where the tone starts and stops).
    inner = slice(800, len(sent) - 800)
    overall = snr_db(sent[inner], echoed[inner] - sent[inner])
    differing = int(np.count_nonzero(echoed[inner] != sent[inner]))
    print(f"echo through PCM16 24 kHz: SNR {overall:.1f} dB, {differing} samples differ")
    assert overall >= MIN_SNR_DB

    # Phase continuity: one sinusoid fitted to the whole echoed tone must match every 20 ms of
    # it; a discontinuity anywhere would leave a window the fit cannot explain.
    t = np.arange(len(echoed)) / 8000
    basis = np.stack([np.sin(2 * np.pi * TONE_HZ * t), np.cos(2 * np.pi * TONE_HZ * t)], axis=1)
    coeffs, *_ = np.linalg.lstsq(basis[inner], echoed[inner], rcond=None)
    fitted = basis @ coeffs
    windows = [
        snr_db(fitted[i : i + 160], echoed[i : i + 160] - fitted[i : i + 160])
        for i in range(800, len(sent) - 800 - 160, 160)
    ]
    print(f"worst 20 ms window: {min(windows):.1f} dB")
    assert min(windows) >= MIN_WINDOW_SNR_DB

    # The model heard PCM16 at 24 kHz: six bytes for every μ-law byte the caller sent (less
    # the little the worker's resampler still held when the call ended).
    (session,) = wait_for_sessions(stack, 1)
    assert session["session_formats"] == {"input": "audio/pcm", "output": "audio/pcm"}
    heard = int(str(session["audio_in_bytes"]))
    assert 6 * len(report.sent_audio) - 6 * 8 * 100 <= heard <= 6 * len(report.sent_audio)


async def test_a_mulaw_worker_names_the_setting_for_a_pcm16_only_backend(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(workers=1, sim_mode="echo", sim_args=["--audio-format", "pcm16"])
    report = await place_call(call_config(stack, CALLER_AUDIO[:8000], hold_s=1.0))

    assert report.received_audio == b""
    assert "set REALTIME_AUDIO_FORMAT=pcm16" in stack.workers[0].log()
