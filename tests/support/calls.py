"""What an end-to-end call left behind, and how to read it: the caller's audio as it came back
(``segments_of``), the realtime simulator's record of each session it served, and the call's
record through the admin API."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from services.call_sim import CallReport
from services.devstack import Stack
from services.realtime_sim.record import read_records
from services.realtime_sim.reply import default_reply_audio
from shared.audio import FRAME_BYTES, SILENCE_BYTE
from tests.support.stack import read_api
from tests.support.waiting import eventually_sync

__all__ = [
    "CALLER_AUDIO",
    "REPLY_AUDIO",
    "REPLY_TEXT",
    "SILENCE",
    "item_audio",
    "lost_within",
    "padded",
    "segments_of",
    "sim_session",
    "sim_sessions",
    "short_reply",
    "tokens_reported",
    "wait_for_call_end",
    "wait_for_sessions",
]

ROOT = Path(__file__).resolve().parents[2]
#: The caller of the demo: "Hi, I would like to know when my order will arrive."
CALLER_AUDIO = (ROOT / "services/call_sim/assets/caller.ulaw").read_bytes()
#: What the realtime simulator's conversation mode answers it.
REPLY_TEXT = (
    "Thanks for calling Switchboard. Your order shipped this morning, and it will arrive on "
    "Thursday. Is there anything else I can help you with?"
)
#: How long the reply ``short_reply`` gives is, unless a test asks for another length.
SHORT_REPLY_S = 2.0
#: That reply's audio: the default reply's first ``SHORT_REPLY_S``.
REPLY_AUDIO = default_reply_audio()[: round(SHORT_REPLY_S * 8000)]
SILENCE = bytes([SILENCE_BYTE])


def short_reply(directory: Path, seconds: float = SHORT_REPLY_S) -> list[str]:
    """Simulator arguments for a reply of the default one's first ``seconds`` (8 s in full):
    a test that needs no long reply should not wait for one to play in real time."""
    path = directory / f"reply-{seconds:g}s.ulaw"
    path.write_bytes(default_reply_audio()[: round(seconds * 8000)])
    return ["--reply-audio", str(path)]


# --- the caller's audio -------------------------------------------------------------------


def segments_of(
    received: bytes, sent: bytes, min_len: int = 160, replay: int = 0
) -> list[tuple[int, int]]:
    """Split ``received`` into runs that each appear, in order, as a contiguous run of
    ``sent``: the proof that what came back is the caller's own audio, unaltered, with at most
    a gap where the failover was. A run may start up to ``replay`` bytes before the end of the
    previous one (audio re-sent after an edge died). Returns each run's (start, end) in
    ``sent``."""
    runs: list[tuple[int, int]] = []
    position, cursor = 0, 0
    while position < len(received):
        probe = received[position : position + min_len]
        start = sent.find(probe, max(0, cursor - replay))
        if start < 0:
            anywhere = sent.find(probe)
            where = (
                f"they are sent bytes {anywhere}.., {cursor - anywhere} before where the "
                f"previous run ended (allowed: {replay})"
                if anywhere >= 0
                else "nowhere in what the caller sent"
            )
            raise AssertionError(
                f"received bytes {position}.. are not the caller's audio in order: {where}"
            )
        length = len(probe)
        while (
            position + length < len(received)
            and start + length < len(sent)
            and received[position + length] == sent[start + length]
        ):
            length += 1
        runs.append((start, start + length))
        position, cursor = position + length, start + length
    return runs


def lost_within(ranges: list[tuple[int, int]], length: int) -> int:
    """How many bytes of the first ``length`` of the caller's audio ``ranges`` cover."""
    return sum(max(0, min(end, length) - start) for start, end in ranges)


def padded(audio: bytes) -> bytes:
    """As the edge sends an item: whole 20 ms frames, the last one padded with silence."""
    return audio + SILENCE * (-len(audio) % FRAME_BYTES)


# --- the realtime simulator's records -----------------------------------------------------


def sim_sessions(stack: Stack) -> list[dict[str, Any]]:
    """The sessions the simulator has recorded so far (each is written as it closes)."""
    return read_records(stack.sim_record)


def wait_for_sessions(stack: Stack, count: int, timeout_s: float = 10) -> list[dict[str, Any]]:
    """The simulator's sessions once at least ``count`` are recorded."""

    def recorded() -> list[dict[str, Any]]:
        sessions = sim_sessions(stack)
        return sessions if len(sessions) >= count else []

    return eventually_sync(recorded, timeout_s, f"{count} realtime sessions recorded")


def sim_session(stack: Stack, timeout_s: float = 10) -> dict[str, Any]:
    """The one realtime session of the test's call, once the simulator has written it."""
    (only,) = wait_for_sessions(stack, 1, timeout_s)
    return only


def item_audio(session: dict[str, Any]) -> dict[str, bytes]:
    """The model's audio per item, in the order the items were sent."""
    audio = base64.b64decode(session["audio_out_b64"])
    items: dict[str, bytes] = {}
    offset = 0
    for delta in session["deltas"]:
        items[delta["item_id"]] = (
            items.get(delta["item_id"], b"") + audio[offset : offset + delta["bytes"]]
        )
        offset += delta["bytes"]
    return items


def tokens_reported(session: dict[str, Any]) -> int:
    """The tokens the simulator reported in the usage of every response."""
    return sum(
        block[side][kind]
        for block in session["usage"]
        for side in ("input_token_details", "output_token_details")
        for kind in ("text_tokens", "audio_tokens")
    )


# --- the call record ----------------------------------------------------------------------


def wait_for_call_end(stack: Stack, call_sid: str, timeout_s: float = 10) -> dict[str, Any]:
    """The admin API's view of the call (record and turns) once its summary is written."""

    def ended() -> dict[str, Any]:
        body = read_api(stack, f"/calls/{call_sid}")
        return body if "ended_by" in body["call"] else {}

    return eventually_sync(ended, timeout_s, f"the summary of call {call_sid}")


def lost_audio_ms(report: CallReport) -> float:
    """The longest stretch of the caller's audio that never came back (echo mode), in ms."""
    runs = segments_of(report.received_audio, report.sent_audio, replay=8000)
    gaps = [max(0, b[0] - a[1]) for a, b in zip(runs, runs[1:], strict=False)]
    return max(gaps, default=0) / 8
