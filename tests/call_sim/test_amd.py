"""Answering machine detection's verdicts (``amd.py``) and the scripted parties that earn them
(``party.py``): pure functions, no sockets."""

from __future__ import annotations

import pytest

from services.call_sim.amd import AMD_RANGES, AmdSettings, AnswerKind, Verdict, plan_verdict
from services.call_sim.party import (
    PartySettings,
    answer_kind,
    callee_of,
    party_frames,
)
from shared.audio import FRAME_BYTES, SILENCE_BYTE, ulaw_to_linear

TIMINGS = {"detect_s": 1.5, "greeting_s": 4.0, "beep_s": 0.5}


def verdict(kind: AnswerKind, settings: AmdSettings) -> Verdict:
    return plan_verdict(kind, settings, **TIMINGS)


@pytest.mark.parametrize(
    ("kind", "enable", "detect_message_end"),
    [
        ("human", ("human", 1.5), ("human", 1.5)),
        ("fax", ("fax", 1.5), ("fax", 1.5)),
        ("machine", ("machine_start", 1.5), ("machine_end_beep", 4.5)),
        # Silence or other sound after the greeting: the speech-end threshold (1.2 s) later.
        ("machine-silence", ("machine_start", 1.5), ("machine_end_silence", 5.2)),
        ("machine-other", ("machine_start", 1.5), ("machine_end_other", 5.2)),
        # Nobody speaks: unknown once the silence timeout (5 s) is over.
        ("silence", ("unknown", 5.0), ("unknown", 5.0)),
    ],
)
def test_each_party_earns_its_documented_verdict(
    kind: AnswerKind, enable: tuple[str, float], detect_message_end: tuple[str, float]
) -> None:
    for mode, expected in (("Enable", enable), ("DetectMessageEnd", detect_message_end)):
        planned = verdict(kind, AmdSettings(mode))  # type: ignore[arg-type]
        assert planned.answered_by == expected[0]
        assert planned.at_s == pytest.approx(expected[1])


def test_tuning_moves_the_verdicts() -> None:
    settings = AmdSettings("DetectMessageEnd", speech_end_threshold_ms=500, silence_timeout_ms=2000)
    assert verdict("machine-silence", settings).at_s == pytest.approx(4.5)
    assert verdict("silence", settings) == Verdict("unknown", 2.0)


def test_anything_undecided_at_the_timeout_is_unknown() -> None:
    settings = AmdSettings("DetectMessageEnd", timeout_s=3)
    assert verdict("machine", settings) == Verdict("unknown", 3.0)
    assert verdict("human", settings) == Verdict("human", 1.5)  # decided in time


def test_machine_detection_duration_is_in_ms() -> None:
    assert Verdict("human", 1.2345).duration_ms == 1234


def test_the_ranges_are_twilios() -> None:
    assert AMD_RANGES["machineDetectionTimeout"] == (3, 60, 30)
    assert AMD_RANGES["machineDetectionSilenceTimeout"] == (2000, 10000, 5000)
    assert AmdSettings("Enable").speech_threshold_ms == 2400


# --- the parties ---------------------------------------------------------------------------

AUDIO = bytes(range(0, 100)) * 40  # 4000 bytes: 0.5 s, none of it silence
PARTY = PartySettings(greeting_s=0.25, beep_s=0.1, hold_s=0.2)


def joined(kind: str) -> bytes:
    return b"".join(party_frames(kind, AUDIO, PARTY))  # type: ignore[arg-type]


def test_a_person_says_the_caller_audio_then_holds() -> None:
    assert joined("human") == AUDIO + bytes([SILENCE_BYTE]) * 1600


def test_a_machine_greets_beeps_then_records_in_silence() -> None:
    audio = joined("machine")
    assert audio[:2000] == AUDIO[:2000]  # greeting_s of the caller audio
    beep = ulaw_to_linear(audio[2000:2800])
    assert abs(int(beep.max())) > 5000  # a loud tone...
    # ...then silence: the last frame's padding, and hold_s.
    assert audio[2800:] == bytes([SILENCE_BYTE]) * (80 + 1600)
    assert joined("machine-silence") == AUDIO[:2000] + bytes([SILENCE_BYTE]) * (80 + 1600)
    other = joined("machine-other")
    assert other[:2000] == AUDIO[:2000] and other[2000:2800] != audio[2000:2800]


def test_silence_fax_and_the_parties_that_never_answer() -> None:
    assert joined("silence") == bytes([SILENCE_BYTE]) * 1600
    fax = joined("fax")  # greeting_s + hold_s of CNG: its first 0.5 s tone covers it all
    assert len(fax) == 3600 + 80 and abs(int(ulaw_to_linear(fax[:3600]).max())) > 5000
    assert all(len(frame) == FRAME_BYTES for frame in party_frames("fax", AUDIO, PARTY))
    for kind in ("no-answer", "busy", "failed"):
        assert party_frames(kind, AUDIO, PARTY) == []
        assert callee_of(kind) == kind
        with pytest.raises(ValueError):
            answer_kind(kind)
    assert callee_of("machine") == "answer" and answer_kind("fax") == "fax"


def test_a_short_greeting_is_padded_with_silence() -> None:
    frames = party_frames("machine-silence", AUDIO[:800], PARTY)
    assert b"".join(frames)[:2000] == AUDIO[:800] + bytes([SILENCE_BYTE]) * 1200


def test_negative_timings_are_refused() -> None:
    with pytest.raises(ValueError, match="ring_s"):
        PartySettings(ring_s=-1)
