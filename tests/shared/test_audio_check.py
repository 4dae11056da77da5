"""The outbound-audio detector: no false alarms on correct μ-law, every wrong format caught."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.doctor.corpus import (
    WRONG_FORMATS,
    as_pcm16_24k,
    asset_speech,
    correct_corpus,
    to_ulaw,
)
from services.doctor.tune_detector import inspect_stream, starts
from shared.audio import silence
from shared.audio_check import (
    FAULT_KINDS,
    MIN_BYTES,
    WINDOW_BYTES,
    OutboundInspector,
    classify_outbound,
)

CORRECT = correct_corpus()
SPEECH = asset_speech()
SILENT = {"digital silence", "dithered silence"}


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_no_false_alarm_on_correct_ulaw(name: str) -> None:
    rng = random.Random(name)
    signal = CORRECT[name]
    for start in starts(signal, step_s=0.5):
        audio = to_ulaw(signal[start:])
        expected = "silence" if name in SILENT else "ok"
        assert classify_outbound(audio).kind == expected, (name, start)
        verdict = inspect_stream(audio, rng)
        assert verdict is not None and verdict.kind == expected, (name, start, verdict)


@pytest.mark.parametrize("fmt", sorted(WRONG_FORMATS))
@pytest.mark.parametrize("clip", sorted(SPEECH))
def test_each_wrong_format_is_caught_within_one_second(clip: str, fmt: str) -> None:
    convert, expected = WRONG_FORMATS[fmt]
    rng = random.Random(clip + fmt)
    signal = SPEECH[clip]
    for start in [0] if fmt == "wav header" else starts(signal):
        data = convert(signal[start:])
        verdict = inspect_stream(data, rng)
        assert verdict is not None and verdict.kind == expected, (start, verdict)
        assert verdict.bytes_examined <= WINDOW_BYTES
        assert verdict.is_fault and verdict.fix
        assert classify_outbound(data).kind == expected


def test_pcm16_digital_silence_is_pcm16() -> None:
    verdict = classify_outbound(bytes(4000))
    assert verdict.kind == "pcm16"
    assert "OPENAI_REALTIME_URL" in (verdict.fix or "") and "audio/pcmu" in (verdict.fix or "")


def test_silence_is_a_warning_decided_only_on_a_whole_second() -> None:
    inspector = OutboundInspector()
    assert inspector.feed(silence(WINDOW_BYTES - 1)) is None
    verdict = inspector.feed(silence(100))
    assert verdict is not None and verdict.kind == "silence" and not verdict.is_fault


def test_ok_is_decided_early_and_only_once() -> None:
    speech = to_ulaw(SPEECH["reply.ulaw"])
    inspector = OutboundInspector()
    assert inspector.feed(speech[: MIN_BYTES - 1]) is None
    verdict = inspector.feed(speech[MIN_BYTES - 1 : 3200])
    assert verdict is not None and verdict.kind == "ok" and inspector.done
    assert inspector.feed(speech[3200:6400]) is None
    assert inspector.feed(bytes(8000)) is None  # after the verdict, nothing is looked at
    assert inspector.finish() is None


def test_headers_and_base64_are_decided_from_the_first_bytes() -> None:
    wav = WRONG_FORMATS["wav header"][0](SPEECH["caller.ulaw"])
    verdict = OutboundInspector().feed(wav[:160])
    assert verdict is not None and verdict.kind == "wav_header"
    text = WRONG_FORMATS["base64 text"][0](SPEECH["caller.ulaw"])
    verdict = OutboundInspector().feed(text[:160])
    assert verdict is not None and verdict.kind == "base64_text"
    assert classify_outbound(b".snd" + bytes(100)).kind == "wav_header"


def test_a_call_shorter_than_the_window_gets_a_verdict_at_the_end() -> None:
    inspector = OutboundInspector()
    assert inspector.feed(silence(800)) is None
    verdict = inspector.finish()
    assert verdict is not None and verdict.kind == "silence"
    assert OutboundInspector().finish() is None  # nothing seen, nothing to say


def test_only_the_first_second_is_read() -> None:
    speech = to_ulaw(SPEECH["reply.ulaw"])[:WINDOW_BYTES]
    pcm = as_pcm16_24k(SPEECH["reply.ulaw"])
    assert classify_outbound(speech + pcm).kind == "ok"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=12000))
def test_any_bytes_get_a_verdict(data: bytes) -> None:
    verdict = classify_outbound(data)
    assert verdict.kind in FAULT_KINDS | {"ok", "silence"}
    assert verdict.bytes_examined == min(len(data), WINDOW_BYTES)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=3000), max_size=12))
def test_any_chunks_give_at_most_one_verdict(chunks: list[bytes]) -> None:
    inspector = OutboundInspector()
    verdicts = [v for v in map(inspector.feed, chunks) if v is not None]
    end = inspector.finish()
    assert len(verdicts) + (end is not None) <= 1


def test_random_bytes_are_not_called_pcm16() -> None:
    noise = np.random.default_rng(1).integers(0, 256, WINDOW_BYTES, dtype=np.uint8).tobytes()
    assert classify_outbound(noise).kind == "ok"
