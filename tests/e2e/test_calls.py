"""Whole calls through real processes: call simulator → edge (uvicorn) → Redis → workers →
realtime simulator, and back. Audio is compared bit-exact both ways."""

from __future__ import annotations

import base64
import hashlib
import random
import threading
import time

import pytest

from services.call_sim import CallReport, place_call, place_calls
from shared.audio import FRAME_BYTES, SILENCE_BYTE
from tests.support.calls import CALLER_AUDIO, REPLY_TEXT, wait_for_sessions
from tests.support.liveness import probing
from tests.support.stack import StackFactory, call_config, metric_value, scrape

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


async def test_echo_five_concurrent_calls_two_workers_bit_exact(make_stack: StackFactory) -> None:
    stack = make_stack(workers=2, sim_mode="echo")
    rng = random.Random(3)
    audios = [rng.randbytes(10 * 8000) for _ in range(5)]  # 10 s each, distinct
    with probing(stack) as probes:  # the processes answer their liveness probes throughout
        reports = await place_calls([call_config(stack, audio, hold_s=1.0) for audio in audios])
    assert probes.failures == [] and probes.latencies_s, probes.summary()

    for audio, report in zip(audios, reports, strict=True):
        assert report.problems() == []
        # Everything the caller said came back, byte for byte, in order. (The echo of the
        # trailing silence may be cut short by the caller's own stop.)
        assert report.sent_audio.startswith(audio)
        assert len(report.received_audio) >= len(audio)
        assert report.received_audio == report.sent_audio[: len(report.received_audio)]
    sessions = wait_for_sessions(stack, 5)
    model_heard = {s["audio_in_sha256"] for s in sessions}
    assert model_heard == {hashlib.sha256(r.sent_audio).hexdigest() for r in reports}
    assert all(s["invalid_events"] == [] for s in sessions)
    claimed_by = {worker.name: worker.log().count("claimed (") for worker in stack.workers}
    assert sum(claimed_by.values()) == 5, claimed_by


async def test_conversation_reply_is_bit_exact_and_logged(make_stack: StackFactory) -> None:
    stack = make_stack(workers=1, sim_mode="conversation")
    edge = stack.edge_admin_urls[0]
    samples: list[tuple[str, float]] = []
    done = threading.Event()

    def poll_metrics() -> None:
        while not done.is_set():
            samples.append((scrape(edge), time.monotonic()))
            time.sleep(0.1)

    poller = threading.Thread(target=poll_metrics)
    poller.start()
    try:
        report: CallReport = await place_call(call_config(stack, CALLER_AUDIO, hold_s=10.0))
    finally:
        done.set()
        poller.join()

    assert report.problems() == []
    (session,) = wait_for_sessions(stack, 1)
    model_audio = base64.b64decode(str(session["audio_out_b64"]))
    assert len(session["deltas"]) > 2
    # Exactly the model's bytes, then μ-law silence completing the last 20 ms frame.
    received = report.received_audio
    assert received[: len(model_audio)] == model_audio
    padding = received[len(model_audio) :]
    assert len(received) % FRAME_BYTES == 0
    assert padding == bytes([SILENCE_BYTE]) * len(padding)
    assert report.heard_audio == received

    assert session["transcripts"] == [REPLY_TEXT]
    worker_log = stack.workers[0].log()
    assert f"call={report.call_sid} AI said: {REPLY_TEXT}" in worker_log
    assert f"{len(model_audio)} bytes" in worker_log
    assert f"call={report.call_sid} caller said: Hi, I would like to know when my order" in (
        worker_log
    )

    # The per-call bytes-out series counted exactly what the caller received, and went away.
    seen = [
        metric_value(text, "switchboard_call_audio_out_bytes_total", call_sid=report.call_sid)
        for text, _ in samples
    ]
    assert max(seen) == len(received)
    final = scrape(edge)
    assert f'call_sid="{report.call_sid}"' not in final
    assert metric_value(final, "switchboard_edge_audio_out_bytes_total") == len(received)
