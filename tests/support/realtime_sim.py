"""What the realtime simulator's tests share: the worker's own session.update, test audio, a
``Driver`` of the session logic without sockets, and a Realtime client over a real socket that
checks every server event it receives."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from websockets.asyncio.client import ClientConnection, connect

from services.realtime_sim.behaviour import BehaviourConfig, Mode, SimSession
from services.realtime_sim.client_events import validate_server_event
from services.realtime_sim.record import SessionRecord, read_records
from services.realtime_worker import openai_protocol as rt
from shared.audio import FRAME_BYTES, SAMPLE_RATE, linear_to_ulaw, silence
from tests.support.waiting import eventually

Event = dict[str, Any]


def options(transcription: str | None = "gpt-4o-transcribe") -> rt.SessionOptions:
    return rt.SessionOptions(
        model="gpt-realtime",
        instructions="You are a helpful phone agent.",
        voice="marin",
        transcription_model=transcription,
        turn_detection="server_vad",
    )


def pcmu_update(transcription: str | None = "gpt-4o-transcribe") -> str:
    """The worker's own session.update: μ-law both ways."""
    return rt.session_update("evt_update", options(transcription))


def tone(ms: int, dbfs: float = -20.0, hz: float = 440.0) -> bytes:
    """A sine tone as μ-law: loud enough to count as speech."""
    n = ms * SAMPLE_RATE // 1000
    amplitude = 32767 * 10 ** (dbfs / 20)
    return linear_to_ulaw(amplitude * np.sin(2 * math.pi * hz * np.arange(n) / SAMPLE_RATE))


def quiet(ms: int) -> bytes:
    return silence(ms * SAMPLE_RATE // 1000)


def frames(audio: bytes) -> list[bytes]:
    """Audio cut the way Twilio sends it: 20 ms chunks."""
    return [audio[i : i + FRAME_BYTES] for i in range(0, len(audio), FRAME_BYTES)]


def check_server_events(events: list[Event]) -> list[Event]:
    """Assert every event is a strictly valid GA server event; return them."""
    for event in events:
        assert validate_server_event(event) == [], event
    return events


def types(events: list[Event]) -> list[str]:
    return [e["type"] for e in events]


class Client:
    """A Realtime client over a real socket that checks every server event it receives."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.received: list[Event] = []

    async def send(self, text: str) -> None:
        await self.ws.send(text)

    async def recv(self, timeout_s: float = 5.0) -> Event:
        with anyio.fail_after(timeout_s):
            frame = await self.ws.recv()
        event: Event = json.loads(frame)
        assert validate_server_event(event) == [], event
        self.received.append(event)
        return event

    async def until(self, kind: str, timeout_s: float = 5.0) -> list[Event]:
        """Events received up to and including the first of type ``kind``."""
        got: list[Event] = []
        while not got or got[-1]["type"] != kind:
            got.append(await self.recv(timeout_s))
        return got


#: What a caller says: 1.2 s of tone, then silence long enough to end the turn.
CALLER = tone(1200) + quiet(700)


class Driver:
    """A SimSession plus everything it produced, every event checked against the SDK types."""

    def __init__(
        self,
        mode: Mode = Mode.CONVERSATION,
        *,
        model: str = "gpt-realtime",
        serial: int = 1,
        **config: Any,
    ) -> None:
        self.record = SessionRecord("s", mode.value, "/v1/realtime", False)
        self.session = SimSession(
            BehaviourConfig(mode=mode, speed=1000, **config), self.record, model, serial
        )
        self.events = check_server_events(self.session.open())

    def send(self, text: str) -> list[Event]:
        out = check_server_events(self.session.receive(text))
        self.events += out
        return out

    def speak(self, audio: bytes) -> list[Event]:
        out: list[Event] = []
        for frame in frames(audio):
            out += self.send(rt.audio_append(frame))
        return out

    def steps(self, limit: int | None = None) -> list[Event]:
        out: list[Event] = []
        while limit is None or limit > 0:
            step = self.session.next_reply_step()
            if step is None:
                break
            batch, pause = step
            assert pause >= 0
            out += check_server_events(batch)
            limit = None if limit is None else limit - 1
        self.events += out
        return out


def of_type(events: list[Event], kind: str) -> list[Event]:
    return [e for e in events if e["type"] == kind]


# --- over a real socket ---------------------------------------------------------------


@asynccontextmanager
async def client(url: str, headers: dict[str, str] | None = None) -> AsyncIterator[Client]:
    async with connect(url, additional_headers=headers, compression=None) as ws:
        yield Client(ws)


async def records(path: Path, count: int = 1) -> list[dict[str, Any]]:
    """The session records the simulator wrote to ``path``, once ``count`` of them are."""

    async def written() -> list[dict[str, Any]]:
        sessions = await anyio.to_thread.run_sync(read_records, path)
        return sessions if len(sessions) >= count else []

    return await eventually(written, what=f"{count} session records")


async def configured(c: Client) -> None:
    assert (await c.recv())["type"] == "session.created"
    await c.send(pcmu_update())
    updated = await c.recv()
    assert updated["type"] == "session.updated"
    assert updated["session"]["audio"]["output"]["format"] == {"type": "audio/pcmu"}
