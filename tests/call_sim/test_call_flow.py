"""Whole simulated calls over real loopback sockets against the fake edge."""

from __future__ import annotations

import asyncio
import base64
import json
import random
from pathlib import Path
from typing import Any

import pytest

from services.call_sim import CallConfig, CallFailed, CallReport, place_call, place_calls
from services.call_sim.__main__ import main
from tests.call_sim.fake_edge import MARK_EVERY, FakeEdge, running
from tests.support.ports import allocator

pytestmark = pytest.mark.anyio

TOKEN = "fake-edge-auth-token"
PUBLIC = "https://edge.switchboard.example"
FRAME = 160


def speech(frames: int, seed: int) -> bytes:
    """Random bytes with no 0xFF, so that no frame looks like the silence the edge skips."""
    rng = random.Random(seed)
    return bytes(rng.randrange(0, 255) for _ in range(frames * FRAME))


def config(
    edge_urls: list[str],
    audio: bytes,
    strict: bool = False,
    send_stop: bool = True,
    timeout_s: float = 10.0,
    linger_s: float = 1.0,
    **extra: Any,
) -> CallConfig:
    return CallConfig(
        edge_urls=edge_urls,
        public_url=PUBLIC,
        auth_token=TOKEN,
        caller_audio=audio,
        hold_s=0.2,
        timeout_s=timeout_s,
        strict=strict,
        send_stop=send_stop,
        linger_s=linger_s,
        quiet_s=0.1,
        **extra,
    )


def without(audio: bytes, ranges: list[tuple[int, int]]) -> bytes:
    """``audio`` less the byte ``ranges``."""
    kept, position = bytearray(), 0
    for start, end in ranges:
        kept += audio[position:start]
        position = end
    return bytes(kept + audio[position:])


async def test_echo_call_is_heard_bit_exact_with_marks_played_in_time() -> None:
    audio = speech(20, seed=1)  # 400 ms
    async with running(FakeEdge(PUBLIC, TOKEN)) as edge:
        report = await place_call(config([edge.url], audio))

    assert report.ok, report.problems()
    assert report.sent_audio == audio + b"\xff" * (10 * FRAME)  # the audio, then 200 ms hold
    assert report.received_audio == audio  # the fake edge echoes all but silence
    assert report.heard_audio == audio  # ... and all of it played before the hang-up
    assert report.closed_by == "caller" and report.close_code == 1000
    assert report.redirects == [] and len(report.stream_sids) == 1
    assert report.timings.first_audio_ms is not None and report.timings.first_audio_ms < 1000

    # The webhook: signed, with Twilio's standard parameters.
    (path, params, signed), *callbacks = edge.webhooks
    assert (path, signed) == ("/twilio/voice", True)
    assert params["CallSid"] == report.call_sid and params["AccountSid"] == report.account_sid
    assert (params["CallStatus"], params["Direction"], params["ApiVersion"]) == (
        "ringing",
        "inbound",
        "2010-04-01",
    )
    assert [(p, c["StreamEvent"], ok) for p, c, ok in callbacks] == [
        ("/twilio/stream-status", "stream-started", True),
        ("/twilio/stream-status", "stream-stopped", True),
    ]

    (stream,) = edge.streams
    assert stream.signature_ok and stream.stopped
    assert stream.start is not None
    start = stream.start["start"]
    assert start["customParameters"] == {"token": "tok-" + report.call_sid}
    assert start["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    assert stream.start["sequenceNumber"] == "1"
    assert bytes(stream.audio_in) == report.sent_audio

    # Every message after start is numbered on; media chunks and timestamps count frames.
    numbers = [int(message["sequenceNumber"]) for message in stream.inbound]
    assert numbers == list(range(2, 2 + len(numbers)))
    media = [m["media"] for m in stream.inbound if m["event"] == "media"]
    assert [int(m["chunk"]) for m in media] == list(range(1, 31))
    assert [int(m["timestamp"]) for m in media] == [20 * i for i in range(30)]
    assert {m["track"] for m in media} == {"inbound"}
    assert stream.inbound[-1]["event"] == "stop"

    # Real-time pace: 30 frames are sent on a 20 ms grid, so they span about 29 × 20 ms. They
    # are timed where they arrive: a first frame received late (a busy machine) shortens the
    # span by that delay, which the lower bound allows; a burst would span a few ms.
    span = stream.media_times[-1] - stream.media_times[0]
    assert 0.5 <= span < 0.9

    # Marks come back in order, each only once the audio before it has played (20 ms a frame).
    names = [f"m{n}" for n in range(MARK_EVERY, 21, MARK_EVERY)]
    assert report.marks_received == report.marks_echoed == names
    assert list(stream.marks_back) == names
    for name in names:
        assert stream.marks_back[name] - stream.marks_sent[name] >= 0.019


@pytest.mark.parametrize("abrupt_drop", ["end", "continue"])
async def test_a_clean_close_follows_the_redirect_in_both_modes_and_resends_nothing(
    abrupt_drop: str,
) -> None:
    audio = speech(15, seed=2)
    dead = f"http://127.0.0.1:{allocator()}"  # refuses connections, like a crashed edge
    first = FakeEdge(PUBLIC, TOKEN, drop_first_stream_after=6)
    async with running(first) as edge:
        report = await place_call(config([edge.url, dead], audio, abrupt_drop=abrupt_drop))
        # The first stream is closed (1011, a close frame) after 6 frames; its edge still
        # answers the resume.
    assert report.ok, report.problems()
    assert report.twilio_errors == []
    assert len(set(report.stream_sids)) == 2
    assert report.redirects == [f"{PUBLIC}/twilio/voice/resume"]
    assert report.close_codes == [1011, 1000] and report.closed_by == "caller"
    resume = [params for path, params, _ in edge.webhooks if path == "/twilio/voice/resume"]
    assert [p["CallStatus"] for p in resume] == ["in-progress"]
    assert resume[0]["CallSid"] == report.call_sid

    one, two = edge.streams
    assert len(one.audio_in) == 6 * FRAME
    assert bytes(one.audio_in + two.audio_in) == report.sent_audio  # no frame repeated
    # What the caller said while Twilio reconnected (on loopback, at most a few frames) is the
    # only thing missing.
    full = audio + b"\xff" * (10 * FRAME)
    assert report.sent_audio == without(full, report.caller_audio_lost)
    assert report.caller_audio_lost_ms < 200
    assert two.start is not None and two.start["start"]["callSid"] == report.call_sid
    # A new stream numbers its chunks and timestamps from the start again.
    first_media = next(m for m in two.inbound if m["event"] == "media")["media"]
    assert (first_media["chunk"], first_media["timestamp"]) == ("1", "0")


def assert_cut_after(report: CallReport, edge: FakeEdge, audio: bytes, frames: int) -> None:
    """The edge read ``frames`` frames of the call's first stream and dropped it, which ended
    the call. The caller may have sent a few more before it saw the drop (a busy machine's
    event loop comes to the close late): in flight, they reached nobody."""
    assert bytes(edge.streams[0].audio_in) == audio[: frames * FRAME]
    assert report.sent_audio == audio[: len(report.sent_audio)]
    assert frames * FRAME <= len(report.sent_audio) < len(audio)


async def test_an_unreachable_edge_is_skipped_and_hangup_ends_the_call() -> None:
    audio = speech(50, seed=3)
    dead = f"http://127.0.0.1:{allocator()}"
    async with running(
        FakeEdge(PUBLIC, TOKEN, drop_first_stream_after=3, hangup_on_resume=True)
    ) as edge:
        report = await place_call(config([dead, edge.url], audio))
    assert report.error is None
    assert any("trying the next edge" in note for note in report.notes)
    assert report.closed_by == "edge" and report.close_codes == [1011]
    assert len(report.twiml) == 2 and "<Hangup/>" in report.twiml[1]
    assert_cut_after(report, edge, audio, 3)


async def test_protocol_violations_are_collected_or_raised_in_strict_mode() -> None:
    audio = speech(5, seed=4)
    async with running(FakeEdge(PUBLIC, TOKEN, misbehave=True)) as edge:
        report = await place_call(config([edge.url], audio))
        with pytest.raises(CallFailed) as failed:
            await place_call(config([edge.url], audio, strict=True))
    kinds = sorted(violation.split(":")[0] for violation in report.protocol_violations)
    assert kinds == ["binary_frame", "double_base64", "extra_field", "frame_size", "wrong_stream"]
    assert not report.ok and report.error is None
    # Twilio would play the double-encoded text as audio; the dropped messages play nothing.
    garbage = base64.b64encode(b"\x10\x90" * 80)
    assert report.received_audio == report.heard_audio == garbage + audio
    assert failed.value.report.protocol_violations


async def test_a_wrong_auth_token_fails_the_call_at_the_webhook() -> None:
    async with running(FakeEdge(PUBLIC, TOKEN)) as edge:
        report = await place_call(
            CallConfig(
                edge_urls=[edge.url], public_url=PUBLIC, auth_token="wrong", caller_audio=b""
            )
        )
    assert report.error is not None and "HTTP 403" in report.error
    assert report.stream_sids == [] and not report.ok
    assert [ok for _, _, ok in edge.webhooks] == [False]


async def test_the_caller_lingers_until_the_echo_of_its_last_frame_has_played() -> None:
    audio = speech(5, seed=7)
    async with running(FakeEdge(PUBLIC, TOKEN, echo_silence=True)) as edge:
        report = await place_call(config([edge.url], audio))
    assert report.ok, report.problems()
    assert report.received_audio == report.heard_audio == report.sent_audio
    assert report.sent_audio == audio + b"\xff" * (10 * FRAME)


async def test_a_caller_owed_an_echo_waits_out_a_stall_longer_than_its_quiet() -> None:
    audio = speech(5, seed=8)
    # The echo stops for 0.5 s just before the caller's audio ends; its 0.2 s hold and 0.1 s
    # quiet are over by then.
    edge = FakeEdge(PUBLIC, TOKEN, echo_silence=True, stall=(4, 0.5))
    async with running(edge):
        impatient = await place_call(config([edge.url], audio))
        owed = await place_call(config([edge.url], audio, echo_quiet_s=1.0))
    assert impatient.ok and len(impatient.received_audio) < len(impatient.sent_audio)
    assert owed.ok, owed.problems()
    assert owed.received_audio == owed.heard_audio == owed.sent_audio


async def test_hanging_up_without_stop_and_timing_out() -> None:
    audio = speech(5, seed=6)
    async with running(FakeEdge(PUBLIC, TOKEN)) as edge:
        quiet = await place_call(config([edge.url], audio, send_stop=False))
        late = await place_call(config([edge.url], audio * 10, timeout_s=0.3))
    assert quiet.ok and quiet.closed_by == "caller"
    assert [m["event"] for m in edge.streams[0].inbound][-1] == "media"
    assert not edge.streams[0].stopped
    assert late.error == "the call did not end within 0.3 s"
    assert 0 < len(late.sent_audio) < len(audio * 10)


async def test_concurrent_calls_keep_their_audio_apart() -> None:
    audios = [speech(8, seed=10 + i) for i in range(4)]
    async with running(FakeEdge(PUBLIC, TOKEN)) as edge:
        reports = await place_calls([config([edge.url], audio) for audio in audios])
    assert [r.heard_audio for r in reports] == audios
    assert len({r.call_sid for r in reports}) == 4
    assert all(r.ok for r in reports)


async def test_cli_places_calls_writes_wavs_and_reports_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audio_file = tmp_path / "caller.ulaw"
    audio_file.write_bytes(speech(5, seed=5))
    wav = tmp_path / "heard.wav"
    async with running(FakeEdge(PUBLIC, TOKEN)) as edge:
        args = ["--edge", edge.url, "--public-url", PUBLIC, "--auth-token", TOKEN]
        args += ["--audio", str(audio_file), "--hold", "0.2", "--calls", "2", "--json"]
        code = await asyncio.to_thread(main, [*args, "--wav-out", str(wav)])
        bad = await asyncio.to_thread(main, [*args[:5], "wrong", *args[6:]])
    out = capsys.readouterr()
    assert code == 0
    assert bad == 1 and "HTTP 403" in out.err
    reports = json.loads(out.out.split("\n]\n")[0] + "\n]")
    assert [r["ok"] for r in reports] == [True, True]
    assert reports[0]["heard_audio"]["bytes"] == 5 * 160
    assert wav.stat().st_size == 44 + 2 * 5 * 160
    assert (tmp_path / "heard-2.wav").exists()


def test_cli_refuses_without_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("TWILIO_WEBHOOK_SHARED_KEY", raising=False)
    assert main(["--edge", "http://127.0.0.1:1"]) == 2


async def test_cli_signs_with_a_shared_key_and_continues_after_an_abrupt_drop(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    audio_file = tmp_path / "caller.ulaw"
    audio_file.write_bytes(speech(20, seed=23))
    shared, key_id = "cli-shared-key", "webhooks_sharedkey_01J9Z6Q8W5X4V3T2S1R0P9N8M7"
    fake = FakeEdge(PUBLIC, TOKEN, shared_key=shared, drop_first_stream_after=3, abrupt=True)
    async with running(fake) as edge:
        args = ["--edge", edge.url, "--public-url", PUBLIC, "--audio", str(audio_file)]
        args += ["--shared-key", shared, "--shared-key-id", key_id]
        args += ["--signature-algorithm", "hmac_sha1", "--abrupt-drop", "continue", "--json"]
        code = await asyncio.to_thread(main, [*args, "--hold", "0.2", "--reconnect-delay", "0.2"])
    assert code == 0, capsys.readouterr().err
    (report,) = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["twilio_errors"] == [31903]
    assert report["caller_audio_lost"]["ms"] >= 180
    assert len(report["redirects"]) == 1 and len(report["stream_sids"]) == 2
    assert edge.verdicts and all(verdict.ok for verdict in edge.verdicts)


async def test_an_abrupt_drop_ends_the_call_with_31903_by_default() -> None:
    audio = speech(60, seed=20)
    async with running(FakeEdge(PUBLIC, TOKEN, drop_first_stream_after=6, abrupt=True)) as edge:
        report = await place_call(config([edge.url], audio))
    assert report.twilio_errors == [31903]
    assert report.error is not None and "31903" in report.error and not report.ok
    assert report.close_codes == [1006] and report.closed_by == "edge"
    assert report.redirects == [] and len(edge.streams) == 1  # the <Redirect> never runs
    assert [path for path, _, _ in edge.webhooks if path.endswith("/resume")] == []
    assert_cut_after(report, edge, audio, 6)


async def test_an_abrupt_drop_continues_in_continue_mode_and_the_caller_talks_on() -> None:
    audio = speech(60, seed=21)  # 1.2 s
    resume_delay_s = 0.3
    edge_config = FakeEdge(
        PUBLIC, TOKEN, drop_first_stream_after=6, abrupt=True, resume_delay_s=resume_delay_s
    )
    async with running(edge_config) as edge:
        report = await place_call(config([edge.url], audio, abrupt_drop="continue"))
    assert report.ok, report.problems()
    assert report.twilio_errors == [31903]  # logged by Twilio, but the call goes on
    assert report.close_codes == [1006, 1000]
    assert report.redirects == [f"{PUBLIC}/twilio/voice/resume"]

    # The caller kept talking while Twilio reconnected: one run of frames, from the first one
    # the old stream never carried to the one due when the new stream began, is lost.
    ((lost_start, lost_end),) = report.caller_audio_lost
    assert lost_start == 6 * FRAME
    assert resume_delay_s * 1000 - 20 <= report.caller_audio_lost_ms <= resume_delay_s * 1000 + 500
    full = audio + b"\xff" * (10 * FRAME)
    one, two = edge.streams
    assert bytes(one.audio_in) == full[:lost_start]
    assert bytes(two.audio_in) == full[lost_end:]
    assert report.sent_audio == without(full, report.caller_audio_lost)
    # ... and the new stream's first frame is the one due then, on the first stream's clock.
    first_frame = lost_end // FRAME
    offset_s = two.media_times[0] - one.media_times[0]
    assert abs(offset_s - first_frame * 0.020) < 0.060

    # The edge's audio (its echo) stopped for the whole reconnection.
    assert report.longest_media_gap_ms() >= resume_delay_s * 1000
    assert sum(size for _, size in report.media_arrivals) == len(report.received_audio)
    # The frame that tripped the drop was never echoed; nor is silence.
    assert report.received_audio == audio[: 5 * FRAME] + audio[lost_end:]


async def test_a_whole_call_signed_with_a_shared_key() -> None:
    audio = speech(10, seed=22)
    shared = "shared-key-secret-0123456789"
    async with running(FakeEdge(PUBLIC, TOKEN, shared_key=shared)) as edge:
        report = await place_call(config([edge.url], audio, shared_key=shared))
        wrong = await place_call(config([edge.url], audio, shared_key="not-the-key"))
    assert report.ok, report.problems()
    assert report.heard_audio == audio
    # Webhook, both status callbacks and the upgrade: each signed with the shared key.
    paths = [path for path, _, _ in edge.webhooks]
    assert paths[:3] == ["/twilio/voice", "/twilio/stream-status", "/twilio/stream-status"]
    assert all(verdict.ok for verdict in edge.verdicts[:4])
    assert wrong.error is not None and "HTTP 403" in wrong.error
    assert edge.verdicts[-1].reason == "bad_signature"
    assert "shared key 'webhooks_sharedkey_" in edge.verdicts[-1].detail
