"""Opening one Realtime session for a call: connect, configure, confirm the audio format, seed.

Every session of a call — the first, a rollover's, a reconnect's, a takeover's — is opened
here, the same way: wait for ``session.created``, send ``session.update`` asking for the call's
audio format both ways (G.711 μ-law, or PCM16 24 kHz in transcoding mode), and accept the
session only once ``session.updated`` confirms it; then send the conversation so far as items.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import websockets.exceptions
from websockets.asyncio.client import ClientConnection

from services.realtime_worker import openai_protocol as rt
from services.realtime_worker.call_profile import CallProfile
from services.realtime_worker.settings import WorkerSettings
from services.realtime_worker.tools import session_tools
from services.realtime_worker.transcode import call_codec
from services.realtime_worker.transfer_tool import transfer_tool
from shared.errors import FormatMismatchError, RealtimeSessionError
from shared.records import Turn

__all__ = [
    "Connector",
    "OpenedSession",
    "check_formats",
    "close_text",
    "open_session",
    "session_options",
]

#: Opens the Realtime WebSocket (``realtime_client.open_realtime``; tests pass their own).
Connector = Callable[[WorkerSettings], Awaitable[ClientConnection]]


def session_options(settings: WorkerSettings, profile: CallProfile) -> rt.SessionOptions:
    """What every session of a call is configured with (``session.update``): the worker's,
    and the doctor's, which checks exactly what the worker would send."""
    builtin: tuple[dict[str, Any], ...] = (rt.END_CALL_TOOL,)
    if profile.transfer_targets:
        builtin += (transfer_tool(profile.transfer_targets),)
    return rt.SessionOptions(
        model=settings.realtime_model,
        instructions=profile.instructions,
        voice=profile.voice,
        transcription_model=settings.transcription_model,
        turn_detection=settings.vad,
        interrupt_response=settings.barge_in,
        tools=session_tools(builtin, profile.tools),
        audio_format=call_codec(settings).wire_format,
    )


@dataclass(frozen=True, slots=True)
class OpenedSession:
    ws: ClientConnection
    confirmed: rt.SessionConfirmed
    seeded: int  # turns sent as conversation items


async def open_session(
    connect: Connector,
    settings: WorkerSettings,
    options: rt.SessionOptions | Awaitable[rt.SessionOptions],
    turns: Sequence[Turn],
    next_event_id: Callable[[str], str],
) -> OpenedSession:
    """A new session, its format confirmed and the ``turns`` seeded.

    ``options`` may still be in the making (the call's set-up hook): they are awaited once the
    socket is open, so connecting and asking the hook overlap.

    Raises ``FormatMismatchError`` when the server confirms another format,
    ``RealtimeSessionError`` when it refuses the session or closes during setup (its ``code``
    says why), and what connecting raises (``OSError``, websockets' errors). The caller bounds
    the time (REALTIME_CONNECT_TIMEOUT). Nothing is left open on failure.
    """
    ws = await connect(settings)
    try:
        created = await _next_session_event(ws)
        if created.updated:
            raise RealtimeSessionError("session.updated before session.created", "protocol")
        if not isinstance(options, rt.SessionOptions):
            options = await options
        await ws.send(rt.session_update(next_event_id("session"), options))
        confirmed = await _next_session_event(ws)
        check_formats(confirmed, options.audio_format)
        for turn in turns:
            # Text items: a client cannot create assistant audio. The server answers
            # conversation.item.added; nothing waits for it.
            item = _SEED_ITEMS[turn.role](turn.text)
            await ws.send(rt.conversation_item_create(next_event_id("seed"), item))
    except BaseException:
        with contextlib.suppress(Exception):
            await ws.close()
        raise
    return OpenedSession(ws, confirmed, len(turns))


_SEED_ITEMS = {
    "user": rt.user_text_item,
    "assistant": rt.assistant_text_item,
    "system": rt.system_text_item,
}


async def _next_session_event(ws: ClientConnection) -> rt.SessionConfirmed:
    """The next session.created/updated; an error event before it is fatal for this session
    (it may still be at its PCM defaults)."""
    while True:
        try:
            event = rt.parse_server_event(await ws.recv())
        except websockets.exceptions.ConnectionClosed as exc:
            raise RealtimeSessionError(
                f"the Realtime server closed the socket during setup ({close_text(exc)})",
                "realtime_closed",
            ) from None
        if isinstance(event, rt.SessionConfirmed):
            return event
        if isinstance(event, rt.ErrorEvent):
            raise RealtimeSessionError(
                f"the Realtime server refused the session: {event.message}", event.code
            )


def check_formats(confirmed: rt.SessionConfirmed, wanted: str) -> None:
    """Raise ``FormatMismatchError`` unless the session speaks ``wanted`` both ways; the message
    names what the server chose and the setting that fixes it."""
    if confirmed.speaks(wanted):
        return
    confirmed_text = (
        f"the Realtime server confirmed input {confirmed.input_format!r} and output "
        f"{confirmed.output_format!r}"
    )
    if wanted == rt.PCM:
        raise FormatMismatchError(
            f"{confirmed_text}; REALTIME_AUDIO_FORMAT=pcm16 needs {rt.PCM!r} at "
            f"{rt.PCM_RATE} Hz both ways. Set REALTIME_AUDIO_FORMAT=pcmu if this server "
            "speaks G.711 μ-law"
        )
    hint = (
        "; if this backend speaks only PCM16 24 kHz, set REALTIME_AUDIO_FORMAT=pcm16"
        if confirmed.speaks(rt.PCM)
        else ""
    )
    raise FormatMismatchError(
        f"{confirmed_text}; Twilio needs {rt.PCMU!r} both ways. Relaying "
        "this would play noise to the caller. Check that OPENAI_REALTIME_URL speaks "
        f"the GA protocol and supports G.711 μ-law{hint}"
    )


def close_text(exc: websockets.exceptions.ConnectionClosed) -> str:
    close = exc.rcvd
    return f"{close.code} {close.reason!r}" if close else "no close frame"
