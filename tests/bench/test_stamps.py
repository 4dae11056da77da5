"""The conversation load's stamps and the simulator's probe: what is stamped reads back, the
VAD hears speech and pauses as the caller meant them, and the probe's line says what it saw."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.realtime_sim.__main__ import build_parser, config_from_args
from services.realtime_sim.probe import Probe, append_probe
from services.realtime_sim.stamps import (
    UNIT_HEADER,
    caller_frame,
    read_caller_frame,
    read_unit_header,
    reply_unit,
    unit_bytes,
)
from services.realtime_sim.vad import EnergyVad, SpeechStarted, SpeechStopped, VadSettings
from shared.audio import FRAME_BYTES

U32 = st.integers(min_value=0, max_value=2**32 - 1)
U63 = st.integers(min_value=0, max_value=2**63 - 1)


@given(U32, U32, U63, st.booleans())
def test_a_caller_frame_reads_back(call: int, seq: int, sent_ns: int, speech: bool) -> None:
    frame = caller_frame(call, seq, sent_ns, speech)
    assert len(frame) == FRAME_BYTES
    stamp = read_caller_frame(frame)
    assert stamp is not None
    assert (stamp.call, stamp.seq, stamp.sent_ns, stamp.speech, stamp.exact) == (
        call,
        seq,
        sent_ns,
        speech,
        True,
    )


@pytest.mark.parametrize("position", [0, 5, 30, 60, FRAME_BYTES - 1])
def test_an_altered_caller_frame_is_caught(position: int) -> None:
    frame = bytearray(caller_frame(3, 7, 123, True))
    frame[position] ^= 0x01
    stamp = read_caller_frame(bytes(frame))
    assert stamp is None or not stamp.exact or (stamp.call, stamp.seq) != (3, 7)
    assert read_caller_frame(b"\xff" * FRAME_BYTES) is None


def test_the_vad_hears_speech_and_pauses_as_stamped() -> None:
    vad = EnergyVad(VadSettings(silence_ms=100))
    worst = 0xFFFF_FFFF  # every nibble 0xF: the loudest a stamped pause can be
    pause = b"".join(caller_frame(worst, worst, 2**63 - 1, False) for _ in range(10))
    assert vad.feed(pause) == []
    speech = b"".join(caller_frame(1, seq, 0, True) for seq in range(1, 6))
    assert [type(e) for e in vad.feed(speech)] == [SpeechStarted]
    assert [type(e) for e in vad.feed(pause)] == [SpeechStopped]


def test_reply_units_read_back_and_refuse_what_is_not_one() -> None:
    unit = reply_unit(4, 2, 9, 1234, 99)
    header = read_unit_header(unit)
    assert header is not None and (header.call, header.response, header.index) == (4, 2, 9)
    assert header.length == len(unit) == 1234 and header.sent_ns == 99
    assert unit_bytes(header) == unit
    assert unit != reply_unit(4, 2, 10, 1234, 99)[:1234]
    assert read_unit_header(b"\xff" * UNIT_HEADER) is None  # the edge's padding
    assert read_unit_header(unit[: UNIT_HEADER - 1]) is None
    with pytest.raises(ValueError):
        reply_unit(0, 1, 0, UNIT_HEADER - 1, 0)


def _delta(response: str, item: str, size: int) -> dict[str, object]:
    audio = base64.b64encode(b"\x55" * size).decode()
    return {"type": "response.output_audio.delta", "response_id": response, "item_id": item,
            "delta": audio}  # fmt: skip


def test_the_probe_times_frames_restamps_deltas_and_writes_one_line(tmp_path: Path) -> None:
    probe = Probe()
    now = time.monotonic_ns()
    audio = caller_frame(5, 1, now, True) + caller_frame(5, 2, now, False)
    probe.heard(audio[:100])  # appends need not be whole frames
    probe.heard(audio[100:] + b"\xff" * FRAME_BYTES)  # and a frame with no stamp
    assert probe.call == 5 and list(probe.up_seq) == [1, 2] and probe.up_foreign == 1
    assert all(0 <= us < 10_000_000 for us in probe.up_us)

    probe.sending({"type": "response.created", "response": {"id": "r1"}})
    delta = _delta("r1", "i1", 900)
    probe.sending(delta)
    unit = base64.b64decode(str(delta["delta"]))
    header = read_unit_header(unit)
    assert header is not None and len(unit) == 900 and unit == unit_bytes(header)
    assert (header.call, header.response, header.index) == (5, 1, 0)
    probe.sending({"type": "conversation.item.truncated", "item_id": "i1", "audio_end_ms": 70})
    probe.sending({"type": "response.done", "response": {"id": "r1", "status": "cancelled"}})

    path = tmp_path / "probe.jsonl"
    append_probe(path, probe)
    [line] = [json.loads(text) for text in path.read_text().splitlines()]
    assert line["call"] == 5 and line["up_seq"] == [1, 2]
    [reply] = line["replies"]
    assert reply["n"] == 1 and reply["status"] == "cancelled" and reply["truncated_ms"] == 70
    assert reply["sizes"] == [900] and reply["sent_ns"] == [header.sent_ns]


def test_the_simulators_bench_flags_reach_its_config(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["--probe", str(tmp_path / "p.jsonl"), "--min-delta-bytes", "320",
         "--max-delta-bytes", "960"]
    )  # fmt: skip
    config = config_from_args(args)
    assert config.probe_path == tmp_path / "p.jsonl"
    assert (config.behaviour.min_delta_bytes, config.behaviour.max_delta_bytes) == (320, 960)
    bad = build_parser().parse_args(["--min-delta-bytes", "900", "--max-delta-bytes", "800"])
    with pytest.raises(ValueError):
        config_from_args(bad)
