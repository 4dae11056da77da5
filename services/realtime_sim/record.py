"""What one simulated session saw and sent, written as one JSON line when it ends.

Outbound fields are filled from the events actually written to the socket, so
``audio_out_b64`` is exactly what the client could have received, in order. Tests compare the
caller's audio with it byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SessionRecord", "append_record", "read_records"]


_TEXT_PARTS = ("input_text", "output_text", "text")


@dataclass
class SessionRecord:
    session: str
    mode: str
    path: str
    authorization_present: bool
    client_events: Counter[str] = field(default_factory=Counter)
    invalid_events: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    audio_in_bytes: int = 0
    deltas: list[dict[str, Any]] = field(default_factory=list)
    transcripts: list[str] = field(default_factory=list)
    session_formats: dict[str, str | None] = field(default_factory=dict)
    # The session's configuration as last set: its instructions, voice and function tools.
    instructions: str = ""
    voice: str | None = None
    tool_names: list[str] = field(default_factory=list)
    truncates: list[dict[str, Any]] = field(default_factory=list)  # accepted: item_id, audio_end_ms
    usage: list[dict[str, Any]] = field(default_factory=list)  # each response.done usage block
    function_calls: list[str] = field(default_factory=list)  # names of the tools it called
    tool_outputs: list[str] = field(default_factory=list)  # function_call_output items received
    user_texts: list[str] = field(default_factory=list)  # user text items the client created
    # Every text message item the client created, in order: {"role": ..., "text": ...} (the
    # conversation a session was seeded with, notes from the client).
    text_items: list[dict[str, str]] = field(default_factory=list)
    hostile: bool = False  # this session misbehaved on purpose (--hostile-every)
    # The instructions each response was generated under, in order: the session's, or those of
    # the response.create that asked for it.
    response_instructions: list[str] = field(default_factory=list)
    dropped: str | None = None  # how --drop-after-ms dropped it: abrupt, 1011, 1001, server-error
    # The close the simulator itself made: {"code": int, or None for an abort, "reason": str}.
    server_close: dict[str, Any] | None = None
    _audio_in_hash: Any = field(default_factory=hashlib.sha256, repr=False)
    _audio_out: bytearray = field(default_factory=bytearray, repr=False)

    def received(self, event_type: str) -> None:
        """Count a valid client event."""
        self.client_events[event_type] += 1

    def invalid(self, problem: str) -> None:
        self.invalid_events.append(problem)

    def item_created(self, item: dict[str, Any]) -> None:
        """Note a conversation item the client created: function outputs and text messages."""
        if item.get("type") == "function_call_output":
            self.tool_outputs.append(str(item.get("output", "")))
        elif item.get("type") == "message":
            role = str(item.get("role", ""))
            for part in item.get("content") or []:
                if not isinstance(part, dict) or part.get("type") not in _TEXT_PARTS:
                    continue
                text = str(part.get("text", ""))
                self.text_items.append({"role": role, "text": text})
                if role == "user" and part.get("type") == "input_text":
                    self.user_texts.append(text)

    def configured(self, session: dict[str, Any]) -> None:
        """Note the session's configuration (after its creation and each update)."""
        self.instructions = str(session.get("instructions") or "")
        output = (session.get("audio") or {}).get("output") or {}
        self.voice = output.get("voice")
        tools = session.get("tools") or []
        self.tool_names = [str(t.get("name")) for t in tools if isinstance(t, dict)]

    def audio_in(self, audio: bytes) -> None:
        """Audio the simulated model accepted from the client."""
        self.audio_in_bytes += len(audio)
        self._audio_in_hash.update(audio)

    def sent(self, event: dict[str, Any]) -> None:
        """Note an event once it has been written to the socket."""
        kind = event.get("type")
        if kind == "response.output_audio.delta":
            audio = base64.b64decode(event["delta"])
            self._audio_out += audio
            self.deltas.append(
                {
                    "response_id": event["response_id"],
                    "item_id": event["item_id"],
                    "bytes": len(audio),
                }
            )
        elif kind == "response.output_audio_transcript.done":
            self.transcripts.append(event["transcript"])
        elif kind == "error":
            error = event["error"]
            # A server_error has no code: its type stands in.
            self.errors.append(f"{error['code'] or error['type']}: {error['message']}")

    def closed(self, code: int | None, reason: str, dropped: str | None = None) -> None:
        """Note that the simulator closed the connection (``code`` None: aborted)."""
        self.server_close = {"code": code, "reason": reason}
        self.dropped = dropped

    @property
    def audio_out(self) -> bytes:
        return bytes(self._audio_out)

    def to_json(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "mode": self.mode,
            "path": self.path,
            "authorization_present": self.authorization_present,
            "client_events": dict(self.client_events),
            "invalid_events": list(self.invalid_events),
            "errors": list(self.errors),
            "audio_in_bytes": self.audio_in_bytes,
            "audio_in_sha256": self._audio_in_hash.hexdigest(),
            "deltas": list(self.deltas),
            "audio_out_bytes": len(self._audio_out),
            "audio_out_b64": base64.b64encode(self._audio_out).decode("ascii"),
            "transcripts": list(self.transcripts),
            "session_formats": dict(self.session_formats),
            "instructions": self.instructions,
            "voice": self.voice,
            "tool_names": list(self.tool_names),
            "truncates": list(self.truncates),
            "usage": list(self.usage),
            "function_calls": list(self.function_calls),
            "tool_outputs": list(self.tool_outputs),
            "hostile": self.hostile,
            "user_texts": list(self.user_texts),
            "text_items": [dict(item) for item in self.text_items],
            "response_instructions": list(self.response_instructions),
            "dropped": self.dropped,
            "server_close": self.server_close,
        }


def append_record(path: Path, record: SessionRecord) -> None:
    """Append one line and flush it, so readers see the session as soon as it ends.

    One ``write`` per line: sessions of one process share the file, and a single short append
    is not interleaved with another.
    """
    line = json.dumps(record.to_json(), separators=(",", ":")) + "\n"
    with path.open("a", encoding="utf-8") as out:
        out.write(line)
        out.flush()


def read_records(path: Path) -> list[dict[str, Any]]:
    """The sessions recorded in ``path`` so far, one per complete line. A line still being
    appended as this reads (a long one reaches the file in parts) is left for the next read."""
    if not path.exists():
        return []
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line]
