"""The energy VAD on μ-law: onsets, stops after the configured silence, any chunk size."""

from __future__ import annotations

from services.realtime_sim.vad import EnergyVad, SpeechStarted, SpeechStopped, VadSettings
from tests.support.realtime_sim import quiet, tone


def feed_in(vad: EnergyVad, audio: bytes, size: int) -> list[object]:
    events: list[object] = []
    for i in range(0, len(audio), size):
        events += vad.feed(audio[i : i + size])
    return events


def test_speech_between_silences() -> None:
    vad = EnergyVad(VadSettings())
    audio = quiet(1000) + tone(800) + quiet(700)
    assert feed_in(vad, audio, 160) == [SpeechStarted(700), SpeechStopped(2300)]
    assert not vad.speaking


def test_chunk_size_does_not_matter() -> None:
    audio = quiet(400) + tone(300) + quiet(200) + tone(100) + quiet(900)
    results = [feed_in(EnergyVad(VadSettings()), audio, size) for size in (160, 37, 1000, 4001)]
    assert all(r == results[0] for r in results)
    assert results[0] == [SpeechStarted(100), SpeechStopped(1500)]


def test_short_pauses_do_not_end_the_turn() -> None:
    vad = EnergyVad(VadSettings(silence_ms=500))
    audio = tone(300) + quiet(480) + tone(300) + quiet(400)
    assert feed_in(vad, audio, 160) == [SpeechStarted(0)]
    assert vad.speaking


def test_clicks_and_quiet_noise_are_not_speech() -> None:
    vad = EnergyVad(VadSettings(onset_ms=40))
    audio = quiet(200) + tone(20) + quiet(200) + tone(2000, dbfs=-60) + quiet(600)
    assert feed_in(vad, audio, 160) == []


def test_configure_changes_silence_and_padding() -> None:
    vad = EnergyVad(VadSettings())
    vad.configure(silence_ms=200, prefix_padding_ms=0)
    audio = quiet(500) + tone(200) + quiet(200)
    assert feed_in(vad, audio, 160) == [SpeechStarted(500), SpeechStopped(900)]
