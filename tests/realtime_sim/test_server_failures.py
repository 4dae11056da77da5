"""Drops, the session cap, the delayed cancel and a refused model, over real loopback sockets."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from websockets.exceptions import ConnectionClosed

from services.realtime_sim import (
    BehaviourConfig,
    DropHow,
    Failures,
    Mode,
    SimulatorConfig,
    run_simulator,
)
from services.realtime_worker import openai_protocol as rt
from tests.support.realtime_sim import (
    CALLER,
    Client,
    client,
    configured,
    frames,
    quiet,
    records,
    types,
)

pytestmark = pytest.mark.anyio


def sim_config(tmp_path: Path, mode: Mode = Mode.CONVERSATION, **behaviour: Any) -> SimulatorConfig:
    return SimulatorConfig(
        behaviour=BehaviourConfig(mode=mode, **{"speed": 1000.0, **behaviour}),
        record_path=tmp_path / "sessions.jsonl",
    )


async def send_audio(c: Client, audio: bytes) -> None:
    """Append ``audio`` in Twilio-sized frames until done or the server has closed."""
    for frame in frames(audio):
        try:
            await c.send(rt.audio_append(frame))
        except ConnectionClosed:
            return


async def closed_by_server(c: Client) -> tuple[list[str], ConnectionClosed]:
    """Read until the server closes; the types read and how it closed."""
    got: list[str] = []
    with anyio.fail_after(5):
        while True:
            try:
                got.append((await c.recv())["type"])
            except ConnectionClosed as closed:
                return got, closed


@pytest.mark.parametrize(
    ("how", "code", "reason"),
    [
        (DropHow.ABRUPT, None, None),
        (DropHow.INTERNAL_ERROR, 1011, "internal server error"),
        (DropHow.GOING_AWAY, 1001, "going away"),
        (DropHow.SERVER_ERROR, 1011, "internal server error"),
    ],
)
async def test_a_session_drops_after_the_audio_threshold(
    tmp_path: Path, how: DropHow, code: int | None, reason: str | None
) -> None:
    failures = Failures(drop_after_ms=300, drop_how=how)
    async with run_simulator(sim_config(tmp_path, Mode.ECHO, failures=failures)) as sim:
        async with client(sim.url) as c:
            await configured(c)
            await send_audio(c, quiet(400))
            got, closed = await closed_by_server(c)
        (record,) = await records(tmp_path / "sessions.jsonl")
    assert got.count("response.output_audio.delta") <= 15  # 300 ms of 20 ms frames
    if code is None:
        assert closed.rcvd is None  # no close frame: the TCP connection was aborted
    else:
        assert closed.rcvd is not None
        assert (closed.rcvd.code, closed.rcvd.reason) == (code, reason)
    assert ("error" in got) is (how is DropHow.SERVER_ERROR)
    assert record["dropped"] == how.value
    assert record["server_close"] == {"code": code, "reason": reason or ""}
    assert record["audio_in_bytes"] >= 300 * 8
    if how is DropHow.SERVER_ERROR:
        assert record["errors"][0].startswith("server_error: ")


async def test_only_the_first_sessions_drop(tmp_path: Path) -> None:
    failures = Failures(drop_after_ms=40, drop_how=DropHow.GOING_AWAY)
    async with run_simulator(sim_config(tmp_path, Mode.ECHO, failures=failures)) as sim:
        for serial in (1, 2):
            async with client(sim.url) as c:
                await configured(c)
                await send_audio(c, quiet(100))
                if serial == 1:
                    await closed_by_server(c)
                else:
                    await c.until("response.output_audio.delta")
        first, second = await records(tmp_path / "sessions.jsonl", 2)
    assert first["dropped"] == "1001" and second["dropped"] is None
    assert second["server_close"] is None


async def test_the_session_cap_closes_with_1001_and_the_real_reason(tmp_path: Path) -> None:
    failures = Failures(session_max_s=0.3)
    async with run_simulator(sim_config(tmp_path, failures=failures)) as sim:
        async with client(sim.url) as c:
            started = time.monotonic()
            created = await c.recv()
            assert created["session"]["expires_at"] <= time.time() + 1
            _, closed = await closed_by_server(c)
            elapsed = time.monotonic() - started
        (record,) = await records(tmp_path / "sessions.jsonl")
    assert closed.rcvd is not None and closed.rcvd.code == 1001
    assert closed.rcvd.reason == "Your session hit the maximum duration of 0.3 seconds."
    assert 0.25 < elapsed < 3
    assert record["server_close"] == {"code": 1001, "reason": closed.rcvd.reason}
    assert record["dropped"] is None


async def test_a_cancel_is_answered_later_and_create_in_between_is_refused(
    tmp_path: Path,
) -> None:
    async with run_simulator(sim_config(tmp_path, speed=2.0, cancel_delay_ms=300)) as sim:
        async with client(sim.url) as c:
            await configured(c)
            for frame in frames(CALLER):
                await c.send(rt.audio_append(frame))
            before = await c.until("response.output_audio.delta")
            response_id = before[-1]["response_id"]
            await c.send(rt.response_cancel("evt_cancel", response_id))
            cancelled = time.monotonic()
            await c.send(rt.response_create("evt_again"))
            between = await c.until("error")
            done = await c.until("response.done")
            waited = time.monotonic() - cancelled
            await c.send(rt.response_create("evt_after"))
            after = await c.until("response.created")
    assert between[-1]["error"]["code"] == "conversation_already_has_active_response"
    assert between[-1]["error"]["event_id"] == "evt_again"
    assert "response.done" not in types(between)
    assert done[-1]["response"]["id"] == response_id
    assert done[-1]["response"]["status_details"]["reason"] == "client_cancelled"
    assert "response.output_audio.delta" not in types(done)  # nothing after the cancel
    assert waited >= 0.25
    assert after[-1]["response"]["id"] != response_id


async def test_an_unknown_model_on_the_url_is_an_error_then_a_close(tmp_path: Path) -> None:
    async with run_simulator(sim_config(tmp_path)) as sim:
        async with client(sim.url + "?model=gpt-realtime-nope") as c:
            error = await c.recv()
            _, closed = await closed_by_server(c)
        async with client(sim.url + "?model=gpt-realtime-2.1") as c:
            assert (await c.recv())["session"]["model"] == "gpt-realtime-2.1"
        (record, _) = await records(tmp_path / "sessions.jsonl", 2)
    assert error["type"] == "error"
    assert error["error"]["code"] == "model_not_found"
    assert error["error"]["message"] == (
        "The model `gpt-realtime-nope` does not exist or you do not have access to it."
    )
    assert closed.rcvd is not None and closed.rcvd.code == 1008
    assert record["server_close"] == {"code": 1008, "reason": "model_not_found"}
    assert record["errors"][0].startswith("model_not_found: ")


async def test_a_hostile_close_is_on_the_record(tmp_path: Path) -> None:
    config = SimulatorConfig(
        behaviour=BehaviourConfig(mode=Mode.ECHO),
        record_path=tmp_path / "sessions.jsonl",
        hostile_every=1,
    )
    async with run_simulator(config) as sim, client(sim.url) as c:
        await configured(c)
        await send_audio(c, quiet(60 * 20))
        closed: ConnectionClosed | None = None
        with anyio.fail_after(5):
            while closed is None:
                try:
                    await c.ws.recv()  # the hostile frames are not all valid events
                except ConnectionClosed as exc:
                    closed = exc
    (record,) = await records(tmp_path / "sessions.jsonl")
    assert closed.rcvd is not None and closed.rcvd.code == 1011
    assert record["hostile"] is True
    assert record["server_close"] == {"code": 1011, "reason": "simulated failure mid-response"}
    assert record["dropped"] is None
