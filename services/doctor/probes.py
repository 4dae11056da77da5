"""The doctor's probes: the I/O behind the checks (Redis, the edge, a Realtime session)."""

from __future__ import annotations

import asyncio
import json
import math
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from services.realtime_worker import openai_protocol as rt
from services.realtime_worker.call_profile import CallParty, call_profile
from services.realtime_worker.realtime_client import open_realtime
from services.realtime_worker.session_setup import session_options
from services.realtime_worker.settings import WorkerSettings
from services.realtime_worker.transcode import call_codec
from shared.audio import FRAME_BYTES, SAMPLE_RATE, linear_to_ulaw
from shared.audio_check import WINDOW_BYTES, AudioVerdict, classify_outbound
from shared.errors import RealtimeProtocolError

from .checks import Check, format_checks, tone_check

__all__ = ["TONE_MS", "probe_edge", "probe_realtime", "probe_redis", "test_tone"]

TONE_MS = 600
_TONE_PROMPT = "This is a connection test. Say: the line is working."


def test_tone(ms: int = TONE_MS, hz: float = 440.0, dbfs: float = -20.0) -> bytes:
    """A μ-law sine, loud enough to count as speech."""
    n = ms * SAMPLE_RATE // 1000
    amplitude = 32767 * 10 ** (dbfs / 20)
    return linear_to_ulaw(amplitude * np.sin(2 * math.pi * hz * np.arange(n) / SAMPLE_RATE))


test_tone.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


async def probe_redis(url: str, timeout_s: float) -> tuple[dict[str, Any] | None, str | None]:
    """(``INFO``'s default sections, server and cluster among them, None) or (None, what went
    wrong)."""
    client = aioredis.Redis.from_url(
        url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
    )
    try:
        async with asyncio.timeout(timeout_s):
            info: dict[str, Any] = await client.info()
        return info, None
    except (TimeoutError, OSError, aioredis.RedisError) as exc:
        return None, str(exc) or type(exc).__name__
    finally:
        await client.aclose()


def _get(url: str, timeout_s: float) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status), response.read(4096).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(4096).decode(errors="replace")


async def probe_edge(admin_url: str, timeout_s: float) -> Check:
    """The edge's /readyz, on its admin port (ADMIN_PORT; the public PORT answers 404)."""
    url = admin_url.rstrip("/") + "/readyz"
    try:
        # urllib blocks: run it off the event loop.
        status, body = await asyncio.to_thread(_get, url, timeout_s)
    except (OSError, ValueError) as exc:
        return Check(
            "edge.readyz",
            "fail",
            f"{url} does not answer: {exc}",
            "check --admin-url (the edge's ADMIN_PORT, default 8081), and that the edge runs "
            "(python -m services.edge) and is reachable",
        )
    if status == 200:
        return Check("edge.readyz", "pass", f"{url} says ready: {body.strip()}")
    if status == 404:
        return Check(
            "edge.readyz",
            "fail",
            f"{url} answers 404: this is not an edge's admin port",
            "/readyz is served on the edge's ADMIN_PORT (default 8081) only, never on its public "
            "PORT: pass --admin-url http://<edge>:<ADMIN_PORT>",
        )
    try:
        reasons = ", ".join(json.loads(body).get("reasons", [])) or body.strip()
    except (ValueError, AttributeError):
        reasons = body.strip()[:200]
    return Check(
        "edge.readyz",
        "fail",
        f"{url} answers {status}: {reasons}",
        "read the edge's log; 'redis unreachable' means the edge's REDIS_URL is wrong or Redis "
        "is down",
    )


@dataclass
class _Session:
    confirmed: rt.SessionConfirmed | None = None
    rejection: str | None = None
    audio: bytearray | None = None
    reply_error: str | None = None


def _connect_failure(settings: WorkerSettings, exc: BaseException) -> Check:
    fix = "check OPENAI_REALTIME_URL (host, port, path /v1/realtime) and the network from here"
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        if status in (401, 403):
            fix = "OPENAI_API_KEY is missing or wrong: set a valid key for this project"
        elif status == 404:
            fix = "check OPENAI_REALTIME_URL's path and OPENAI_REALTIME_MODEL"
    return Check(
        "realtime.connect",
        "fail",
        f"cannot open a Realtime session at {settings.realtime_url}: {exc}",
        fix,
    )


async def probe_realtime(settings: WorkerSettings, tone: bool, timeout_s: float) -> list[Check]:
    """Open a session, send the worker's own session.update, and (with ``tone``) a test tone."""
    try:
        async with asyncio.timeout(timeout_s):
            ws = await open_realtime(settings)
    except (TimeoutError, OSError, InvalidStatus, ConnectionClosed) as exc:
        return [_connect_failure(settings, exc)]
    checks = [Check("realtime.connect", "pass", f"connected to {settings.realtime_url}")]
    seen = _Session()
    try:
        async with asyncio.timeout(timeout_s):
            await _converse(ws, settings, tone, seen)
    except (TimeoutError, ConnectionClosed, RealtimeProtocolError) as exc:
        what = "timed out" if isinstance(exc, TimeoutError) else str(exc)
        if seen.confirmed is None and seen.rejection is None:
            seen.rejection = f"session ended before session.updated ({what})"
        elif tone and seen.audio is not None and len(seen.audio) == 0:
            seen.reply_error = what
    finally:
        await ws.close()
    checks.append(format_checks(seen.confirmed, seen.rejection, call_codec(settings).wire_format))
    if tone:
        audio = bytes(seen.audio or b"")
        verdict: AudioVerdict | None = classify_outbound(audio) if audio else None
        checks.append(tone_check(verdict, seen.reply_error))
    return checks


async def _converse(
    ws: ClientConnection, settings: WorkerSettings, tone: bool, seen: _Session
) -> None:
    # The codec a worker would use: with pcm16 the tone goes up to PCM16 and the reply comes
    # back to μ-law, so what is checked is what a caller would hear.
    codec = call_codec(settings)
    update_id = f"doctor_{uuid.uuid4().hex[:8]}"
    # Exactly what a worker sends for a call to the first agent (of AGENTS_FILE, or the one
    # default agent), its tools of TOOLS_FILE included.
    agent = settings.agents.agents[0]
    profile = call_profile(settings, agent, CallParty("doctor"), tools=settings.tools)
    await ws.send(rt.session_update(update_id, session_options(settings, profile)))
    while seen.confirmed is None or not seen.confirmed.updated:
        event = rt.parse_server_event(await ws.recv())
        if isinstance(event, rt.SessionConfirmed):
            seen.confirmed = event
        elif isinstance(event, rt.ErrorEvent):
            seen.rejection = f"{event.code}: {event.message}"
            return
    if not tone:
        return
    seen.audio = bytearray()
    audio = test_tone()
    for i in range(0, len(audio), FRAME_BYTES):
        frame = audio[i : i + FRAME_BYTES]
        await ws.send(rt.audio_append(codec.to_model(frame)))
    await ws.send(rt.response_create(f"doctor_{uuid.uuid4().hex[:8]}", _TONE_PROMPT))
    while len(seen.audio) < WINDOW_BYTES:
        event = rt.parse_server_event(await ws.recv())
        if isinstance(event, rt.OutputAudioDelta):
            seen.audio += codec.to_caller(event.audio)
        elif isinstance(event, rt.ResponseDone) and seen.audio:
            return
        elif isinstance(event, rt.ErrorEvent) and event.code != (
            "conversation_already_has_active_response"  # VAD answered the tone first: fine
        ):
            seen.reply_error = f"{event.code}: {event.message}"
            return
