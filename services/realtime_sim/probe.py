"""``--probe FILE``: the simulator's side of the load bench's conversation load.

With a probe, a session times every stamped caller frame it hears (``stamps.py``: the frame
says when the caller sent it) and replaces the audio of each reply delta it sends, just before
writing it, by a stamped unit of the same length that says when it was sent. When the session
ends, one JSON line goes to FILE: which call it served, each caller frame's sequence number
and one-way latency, and per response how many deltas went out when, how it ended and where
the client truncated it. The bench joins that with what its callers heard.

The canned reply's pacing and delta sizes are kept (``--speed``, ``--min-delta-bytes``,
``--max-delta-bytes``); only the bytes change. Costs a decode and an encode per delta, and a
clock read per frame heard: meant for the bench, not for tests of the bridge's behaviour.
"""

from __future__ import annotations

import base64
import json
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.audio import FRAME_BYTES

from .stamps import UNIT_HEADER, read_caller_frame, reply_unit

__all__ = ["Probe", "append_probe"]

UNKNOWN_CALL = 0xFFFF_FFFF  # no stamped caller frame heard yet


@dataclass
class _Reply:
    number: int  # 1, 2, … in the session
    status: str = "in_progress"
    sent_ns: list[int] = field(default_factory=list)  # per delta
    sizes: list[int] = field(default_factory=list)  # bytes per delta
    truncated_ms: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.number,
            "status": self.status,
            "sent_ns": self.sent_ns,
            "sizes": self.sizes,
            "truncated_ms": self.truncated_ms,
        }


class Probe:
    """One session's stamps. ``heard`` takes the caller audio the session accepted; ``sending``
    sees every event just before it is written, and restamps audio deltas in place."""

    def __init__(self) -> None:
        self.call = UNKNOWN_CALL
        self._pending = b""
        self.up_seq = array("I")  # stamped caller frames heard, in order
        self.up_us = array("q")  # their one-way latency, µs
        self.up_not_exact = 0  # stamped, but the body is not what the stamp says
        self.up_foreign = 0  # 160-byte frames with no stamp at all
        self._replies: dict[str, _Reply] = {}  # by response id
        self._items: dict[str, _Reply] = {}  # by item id (truncates name the item)

    def heard(self, audio: bytes) -> None:
        now = time.monotonic_ns()
        data = self._pending + audio if self._pending else audio
        whole = len(data) - len(data) % FRAME_BYTES
        self._pending = data[whole:]
        for offset in range(0, whole, FRAME_BYTES):
            stamp = read_caller_frame(data[offset : offset + FRAME_BYTES])
            if stamp is None:
                self.up_foreign += 1
                continue
            if self.call == UNKNOWN_CALL:
                self.call = stamp.call
            if not stamp.exact or stamp.call != self.call:
                self.up_not_exact += 1
                continue
            self.up_seq.append(stamp.seq)
            self.up_us.append((now - stamp.sent_ns) // 1000)

    def sending(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "response.output_audio.delta":
            self._restamp(event)
        elif kind == "response.created":
            self._replies[event["response"]["id"]] = _Reply(len(self._replies) + 1)
        elif kind == "response.done":
            done = self._replies.get(event["response"]["id"])
            if done is not None:
                done.status = event["response"]["status"]
        elif kind == "conversation.item.truncated":
            cut = self._items.get(event["item_id"])
            if cut is not None:
                cut.truncated_ms = event["audio_end_ms"]

    def _restamp(self, event: dict[str, Any]) -> None:
        reply = self._replies.get(event["response_id"])
        if reply is None:
            return
        self._items[event["item_id"]] = reply
        size = len(base64.b64decode(event["delta"]))
        if size < UNIT_HEADER:
            return  # too short to carry a stamp: left as it is (the listener counts it)
        now = time.monotonic_ns()
        unit = reply_unit(self.call, reply.number, len(reply.sent_ns), size, now)
        event["delta"] = base64.b64encode(unit).decode("ascii")
        reply.sent_ns.append(now)
        reply.sizes.append(size)

    def to_json(self) -> dict[str, Any]:
        return {
            "call": self.call,
            "up_seq": self.up_seq.tolist(),
            "up_us": self.up_us.tolist(),
            "up_not_exact": self.up_not_exact,
            "up_foreign": self.up_foreign,
            "replies": [reply.to_json() for reply in self._replies.values()],
        }


def append_probe(path: Path, probe: Probe) -> None:
    """One line per session, in one write (sessions share the file)."""
    line = json.dumps(probe.to_json(), separators=(",", ":")) + "\n"
    with path.open("a", encoding="utf-8") as out:
        out.write(line)
