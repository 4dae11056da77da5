"""The simulator's misbehaving modes (--fault): each visible to a client as it would be live."""

from __future__ import annotations

import base64

import pytest

from services.realtime_sim.__main__ import build_parser, config_from_args
from services.realtime_sim.behaviour import Mode
from services.realtime_sim.faults import Fault, encode_delta, ulaw_to_pcm16_24k
from services.realtime_worker import openai_protocol as rt
from shared.audio_check import classify_outbound
from tests.support.realtime_sim import CALLER, Driver, of_type, pcmu_update, tone


def _reply_audio(d: Driver) -> bytes:
    d.speak(CALLER)
    return b"".join(
        base64.b64decode(e["delta"]) for e in of_type(d.steps(), "response.output_audio.delta")
    )


def test_no_fault_is_the_default_and_answers_in_ulaw() -> None:
    d = Driver()
    (updated,) = d.send(pcmu_update())
    assert updated["session"]["audio"]["output"]["format"] == {"type": "audio/pcmu"}
    assert classify_outbound(_reply_audio(d)).kind == "ok"


def test_pcm16_confirms_pcm_and_answers_in_pcm16_24k() -> None:
    d = Driver(fault=Fault.PCM16)
    (updated,) = d.send(pcmu_update())  # no unsupported_audio_format error: it claims PCM
    audio = updated["session"]["audio"]
    assert (
        audio["input"]["format"]
        == audio["output"]["format"]
        == {"type": "audio/pcm", "rate": 24000}
    )
    assert updated["session"]["instructions"] == "You are a helpful phone agent."  # rest applied
    reply = _reply_audio(d)
    assert not of_type(d.events, "error")
    assert len(reply) == 6 * len(d.session.config.reply_audio)  # 24 kHz, 2 bytes a sample
    assert classify_outbound(reply).kind == "pcm16"


def test_ignore_session_update_keeps_the_default_session() -> None:
    d = Driver(fault=Fault.IGNORE_SESSION_UPDATE)
    (updated,) = d.send(pcmu_update())
    assert updated["session"] == d.events[0]["session"]  # exactly session.created's
    assert updated["session"]["audio"]["output"]["format"]["type"] == "audio/pcm"
    assert classify_outbound(_reply_audio(d)).kind == "pcm16"


def test_double_base64_deltas_decode_to_base64_text() -> None:
    d = Driver(fault=Fault.DOUBLE_BASE64)
    d.send(pcmu_update())
    d.speak(CALLER)
    deltas = [e["delta"] for e in of_type(d.steps(), "response.output_audio.delta")]
    once = b"".join(base64.b64decode(delta) for delta in deltas)
    assert classify_outbound(once).kind == "base64_text"
    twice = b"".join(base64.b64decode(base64.b64decode(delta)) for delta in deltas)
    assert twice == d.session.config.reply_audio


def test_encode_delta_and_upsampling() -> None:
    assert encode_delta(Fault.NONE, b"\xff\x00") == base64.b64encode(b"\xff\x00").decode()
    assert len(ulaw_to_pcm16_24k(b"\xff" * 10)) == 60
    assert ulaw_to_pcm16_24k(b"") == b""


@pytest.mark.parametrize("fault", [f.value for f in Fault])
def test_fault_flag_reaches_the_config(fault: str) -> None:
    args = build_parser().parse_args(["--fault", fault])
    assert config_from_args(args).behaviour.fault == Fault(fault)


def test_fault_defaults_to_none() -> None:
    assert config_from_args(build_parser().parse_args([])).behaviour.fault is Fault.NONE


@pytest.mark.parametrize(("flag", "pcm16"), [([], False), (["--audio-format", "pcm16"], True)])
def test_audio_format_flag(flag: list[str], pcm16: bool) -> None:
    assert config_from_args(build_parser().parse_args(flag)).behaviour.serves_pcm16 is pcm16


def test_a_pcm16_only_backend_keeps_pcm_and_echoes_the_pcm_it_heard_unchanged() -> None:
    d = Driver(mode=Mode.ECHO, serves_pcm16=True)
    (updated,) = d.send(pcmu_update())  # asks for μ-law, which this backend does not have
    pcm = {"type": "audio/pcm", "rate": 24000}
    assert updated["session"]["audio"]["input"]["format"] == pcm
    assert updated["session"]["audio"]["output"]["format"] == pcm
    speech = ulaw_to_pcm16_24k(tone(200))
    d.send(rt.audio_append(speech[:4800]))
    d.send(rt.audio_append(speech[4800:]))
    echoed = b"".join(
        base64.b64decode(e["delta"]) for e in of_type(d.events, "response.output_audio.delta")
    )
    assert echoed == speech
    assert not of_type(d.events, "error")
    assert d.record.audio_in_bytes == len(speech)


def test_a_pcm16_only_backend_converses_in_pcm16() -> None:
    d = Driver(serves_pcm16=True)
    d.send(pcmu_update())
    d.send(rt.audio_append(ulaw_to_pcm16_24k(CALLER)))
    reply = b"".join(
        base64.b64decode(e["delta"]) for e in of_type(d.steps(), "response.output_audio.delta")
    )
    assert len(reply) == 6 * len(d.session.config.reply_audio)
    assert classify_outbound(reply).kind == "pcm16"
