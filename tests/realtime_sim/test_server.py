"""The simulator over real loopback sockets, as the worker and the e2e tests use it."""

from __future__ import annotations

import base64
import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from services.realtime_sim import BehaviourConfig, Mode, SimulatorConfig, run_simulator
from services.realtime_sim.reply import DEFAULT_REPLY_TEXT, default_reply_audio
from services.realtime_worker import openai_protocol as rt
from shared.audio import FRAME_BYTES
from tests.support.realtime_sim import (
    CALLER,
    Event,
    client,
    configured,
    frames,
    pcmu_update,
    records,
    tone,
    types,
)

pytestmark = pytest.mark.anyio


def config(tmp_path: Path, mode: Mode = Mode.CONVERSATION, **kwargs: Any) -> SimulatorConfig:
    speed = kwargs.pop("speed", 1000.0)
    return SimulatorConfig(
        behaviour=BehaviourConfig(mode=mode, speed=speed),
        record_path=tmp_path / "sessions.jsonl",
        **kwargs,
    )


def audio_of(events: list[Event]) -> bytes:
    return b"".join(
        base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"
    )


async def test_echo_returns_exactly_the_appended_bytes(tmp_path: Path) -> None:
    sent = random.Random(5).randbytes(50 * FRAME_BYTES)
    async with run_simulator(config(tmp_path, Mode.ECHO)) as sim, client(sim.url) as c:
        await configured(c)
        for frame in frames(sent):
            await c.send(rt.audio_append(frame))
        got: list[Event] = []
        while len(audio_of(got)) < len(sent):
            got.append(await c.recv())
    assert audio_of(got) == sent
    assert types(got)[0] == "response.created"
    (record,) = await records(tmp_path / "sessions.jsonl")
    assert record["mode"] == "echo"
    assert record["audio_in_bytes"] == len(sent)
    assert record["audio_in_sha256"] == hashlib.sha256(sent).hexdigest()
    assert base64.b64decode(record["audio_out_b64"]) == sent
    assert [d["bytes"] for d in record["deltas"]] == [FRAME_BYTES] * 50
    assert record["client_events"] == {"session.update": 1, "input_audio_buffer.append": 50}
    assert record["invalid_events"] == [] and record["errors"] == []


async def test_conversation_reply_and_record(tmp_path: Path) -> None:
    async with (
        run_simulator(config(tmp_path)) as sim,
        client(sim.url + "?model=gpt-realtime-2") as c,
    ):
        created = await c.recv()
        assert created["session"]["model"] == "gpt-realtime-2"
        await c.send(pcmu_update())
        await c.recv()
        for frame in frames(CALLER):
            await c.send(rt.audio_append(frame))
        reply = await c.until("response.done")
    received = audio_of(reply)
    assert received == default_reply_audio()
    sizes = [
        len(base64.b64decode(e["delta"]))
        for e in reply
        if e["type"] == "response.output_audio.delta"
    ]
    assert len(set(sizes)) > 5 and sum(s % FRAME_BYTES == 0 for s in sizes) <= 1
    assert reply[-1]["response"]["status"] == "completed"
    assert reply[-1]["response"]["usage"]["output_tokens"] > 0

    (record,) = await records(tmp_path / "sessions.jsonl")
    assert base64.b64decode(record["audio_out_b64"]) == received
    assert [d["bytes"] for d in record["deltas"]] == sizes
    assert {d["response_id"] for d in record["deltas"]} == {reply[-1]["response"]["id"]}
    assert record["transcripts"] == [DEFAULT_REPLY_TEXT]
    assert record["session_formats"] == {"input": "audio/pcmu", "output": "audio/pcmu"}
    assert record["path"] == "/v1/realtime?model=gpt-realtime-2"
    assert record["authorization_present"] is False
    assert record["audio_in_bytes"] == len(CALLER)


async def test_barge_in_stops_the_deltas(tmp_path: Path) -> None:
    async with run_simulator(config(tmp_path, speed=8.0)) as sim, client(sim.url) as c:
        await configured(c)
        for frame in frames(CALLER):
            await c.send(rt.audio_append(frame))
        before = await c.until("response.output_audio.delta")
        response_id = before[-1]["response_id"]
        for frame in frames(tone(100)):
            await c.send(rt.audio_append(frame))
        during = await c.until("response.done")
        assert during[-1]["response"]["status"] == "cancelled"
        assert during[-1]["response"]["id"] == response_id
        assert "input_audio_buffer.speech_started" in types(during)
        # Nothing for the cancelled response after its response.done.
        await c.send(rt.response_cancel("c1"))
        after = await c.until("error")
        assert all(e.get("response_id") != response_id for e in after)
    heard = audio_of(before + during)
    assert 0 < len(heard) < len(default_reply_audio())
    (record,) = await records(tmp_path / "sessions.jsonl")
    assert base64.b64decode(record["audio_out_b64"]) == heard
    assert record["transcripts"] == []


async def test_non_pcmu_session_is_refused(tmp_path: Path) -> None:
    async with run_simulator(config(tmp_path, Mode.ECHO)) as sim, client(sim.url) as c:
        created = await c.recv()
        assert created["session"]["audio"]["input"]["format"]["type"] == "audio/pcm"
        await c.send(rt.audio_append(b"\x00" * FRAME_BYTES))
        error = await c.recv()
        assert error["error"]["code"] == "unsupported_audio_format"
        update = json.loads(pcmu_update())
        update["session"]["audio"]["input"]["format"] = {"type": "audio/pcma"}
        await c.send(json.dumps(update))
        updated, error = await c.recv(), await c.recv()
        assert updated["session"]["audio"]["input"]["format"] == {"type": "audio/pcma"}
        assert error["error"]["code"] == "unsupported_audio_format"
        assert "audio/pcma" in error["error"]["message"]
    (record,) = await records(tmp_path / "sessions.jsonl")
    assert record["audio_in_bytes"] == 0 and record["audio_out_b64"] == ""
    assert record["session_formats"] == {"input": "audio/pcma", "output": "audio/pcmu"}
    assert len(record["errors"]) == 2


async def test_invalid_event_gets_an_error_naming_it(tmp_path: Path) -> None:
    async with run_simulator(config(tmp_path)) as sim, client(sim.url) as c:
        await c.recv()
        beta = {
            "type": "session.update",
            "event_id": "evt_9",
            "session": {"input_audio_format": "g711_ulaw"},
        }
        await c.send(json.dumps(beta))
        error = await c.recv()
        assert error["error"]["type"] == "invalid_request_error"
        assert error["error"]["event_id"] == "evt_9"
        assert "session" in error["error"]["message"]
        await c.send("not json")
        assert (await c.recv())["error"]["code"] == "invalid_json"
    (record,) = await records(tmp_path / "sessions.jsonl")
    assert len(record["invalid_events"]) == 2
    assert record["session_formats"]["input"] == "audio/pcm"


async def test_beta_header_gets_error_then_close_4000(tmp_path: Path) -> None:
    async with run_simulator(config(tmp_path)) as sim:
        async with client(sim.url, {"OpenAI-Beta": "realtime=v1"}) as c:
            error = await c.recv()
            assert error["type"] == "error"
            assert error["error"]["code"] == "beta_api_shape_disabled"
            with pytest.raises(ConnectionClosed) as closed:
                await c.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
    (record,) = await records(tmp_path / "sessions.jsonl")
    assert record["errors"][0].startswith("beta_api_shape_disabled")


async def test_api_key_is_required_when_configured(tmp_path: Path) -> None:
    async with run_simulator(config(tmp_path, api_key="sk-test-123")) as sim:
        for headers in (
            None,
            {"Authorization": "Bearer sk-wrong"},
            {"Authorization": "sk-test-123"},
        ):
            with pytest.raises(InvalidStatus) as refused:
                async with client(sim.url, headers):
                    pass
            assert refused.value.response.status_code == 401
        async with client(sim.url, {"Authorization": "Bearer sk-test-123"}) as c:
            assert (await c.recv())["type"] == "session.created"
    (record,) = await records(tmp_path / "sessions.jsonl")
    assert record["authorization_present"] is True


async def test_other_paths_are_not_found(tmp_path: Path) -> None:
    async with run_simulator(config(tmp_path)) as sim:
        with pytest.raises(InvalidStatus) as refused:
            async with client(sim.url.replace("/v1/realtime", "/v1/other")):
                pass
        assert refused.value.response.status_code == 404


async def test_record_written_when_client_leaves_mid_response(tmp_path: Path) -> None:
    async with run_simulator(config(tmp_path, speed=2.0)) as sim:
        async with client(sim.url) as c:
            await configured(c)
            for frame in frames(CALLER):
                await c.send(rt.audio_append(frame))
            got = await c.until("response.output_audio.delta")
        (record,) = await records(tmp_path / "sessions.jsonl")
    out = base64.b64decode(record["audio_out_b64"])
    assert out.startswith(audio_of(got))
    assert 0 < len(out) < len(default_reply_audio())
    assert record["transcripts"] == []


async def test_record_written_when_the_simulator_stops(tmp_path: Path) -> None:
    running = run_simulator(config(tmp_path, Mode.ECHO))
    sim = await running.__aenter__()
    async with client(sim.url) as c:
        await configured(c)
        await running.__aexit__(None, None, None)  # stop with the client still connected
        with pytest.raises(ConnectionClosed) as closed:
            await c.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        (record,) = await records(tmp_path / "sessions.jsonl")
    assert record["client_events"] == {"session.update": 1}
