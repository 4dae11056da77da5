"""Helpers shared by the realtime simulator tests."""

from __future__ import annotations

import json
import math
from typing import Any

import anyio
import numpy as np
from websockets.asyncio.client import ClientConnection

from services.realtime_sim.client_events import validate_server_event
from services.realtime_worker import openai_protocol as rt
from shared.audio import FRAME_BYTES, SAMPLE_RATE, linear_to_ulaw, silence

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
