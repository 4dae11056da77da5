"""The conversation load's listener: what one caller hears of the model's replies. Sans I/O.

Two parts, fed by the load generator with each message the bridge sends:

- ``Playout``, Twilio's player as the bench models it: audio plays at 8 bytes per ms behind
  what is queued; a mark is due when playback reaches it (at once if nothing is queued);
  ``clear`` drops what is queued and makes every pending mark due now.
- ``Listener``, the byte stream read back into the simulator's stamped reply units
  (``services.realtime_sim.stamps``): every byte checked, each unit's first byte timed
  against its send time, units of a reply counted in order, and what a ``clear`` cut.

Times: ``now`` in seconds and ``now_ns`` in nanoseconds, both of CLOCK_MONOTONIC.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from services.realtime_sim.stamps import (
    UNIT_HEADER,
    UNIT_MAGIC,
    UnitHeader,
    read_unit_header,
    unit_bytes,
)
from shared.audio import BYTES_PER_MS, SILENCE_BYTE

__all__ = ["Heard", "Listener", "Playout"]

BYTES_PER_S = BYTES_PER_MS * 1000


class Playout:
    """Queued audio and marks at the caller's end."""

    def __init__(self) -> None:
        self.play_end = 0.0  # when what is queued has played
        self._marks: deque[tuple[float, str]] = deque()  # (due, name), due ascending

    def playing(self, now: float) -> bool:
        return self.play_end > now

    def queued_s(self, now: float) -> float:
        return max(0.0, self.play_end - now)

    def audio(self, size: int, now: float) -> None:
        self.play_end = max(self.play_end, now) + size / BYTES_PER_S

    def mark(self, name: str, now: float) -> list[str]:
        """Queue a mark; returned at once (to echo now) when nothing plays ahead of it."""
        if self.play_end <= now and not self._marks:
            return [name]
        self._marks.append((max(self.play_end, now), name))
        return []

    def due(self, now: float) -> list[str]:
        """Marks playback has reached by ``now``, in order."""
        names: list[str] = []
        marks = self._marks
        while marks and marks[0][0] <= now:
            names.append(marks.popleft()[1])
        return names

    def clear(self, now: float) -> list[str]:
        """Drop the queued audio; every pending mark is echoed now, as Twilio does."""
        names = [name for _, name in self._marks]
        self._marks.clear()
        self.play_end = min(self.play_end, now)
        return names


@dataclass
class Heard:
    """One reply as this caller received it."""

    units: int = 0  # units received whole and in order, from index 0
    audio_bytes: int = 0  # unit bytes received (padding not counted)
    gaps: int = 0  # units skipped within the reply: lost on the way
    cut: bool = False  # a clear ended it at the caller's end
    played_ms_at_clear: float | None = None  # how much of it had played when cleared


@dataclass
class Listener:
    """One call's stamped reply audio, read back from the bytes the bridge sent."""

    call: int
    replies: dict[int, Heard] = field(default_factory=dict)  # by response number
    latencies: list[tuple[int, int]] = field(default_factory=list)  # (sent_ns, first byte ns)
    not_exact: int = 0  # units with a byte not what the model sent, or repeated
    garbled: int = 0  # bytes that start no unit of this call (skipped to the next unit)
    stale: int = 0  # bytes of a cleared reply's units that arrived after its clear
    padding: int = 0  # μ-law silence between units (the edge pads a reply's last frame)
    _header: bytearray = field(default_factory=bytearray)
    _header_ns: int = 0  # arrival of the current header's first byte
    _unit: UnitHeader | None = None
    _expected: bytes = b""
    _pos: int = 0
    _bad: bool = False
    _counts: bool = False  # the unit in progress counts (not stale, not a repeat)
    _cut_up_to: int = 0  # replies numbered up to this were cleared

    @property
    def current(self) -> int:
        """The highest reply number heard so far (0: none)."""
        return max(self.replies, default=0)

    def feed(self, data: bytes, now_ns: int) -> int | None:
        """Audio as it arrives; returns the number of a reply whose first unit began in it."""
        started: int | None = None
        i, n = 0, len(data)
        while i < n:
            if self._unit is not None:
                i = self._body(data, i)
                continue
            if not self._header:
                while i < n and data[i] == SILENCE_BYTE:
                    i += 1
                    self.padding += 1
                if i == n:
                    break
                self._header_ns = now_ns
            take = min(n - i, UNIT_HEADER - len(self._header))
            self._header += data[i : i + take]
            i += take
            if len(self._header) < UNIT_HEADER:
                break
            header = read_unit_header(bytes(self._header))
            if header is None or header.call != self.call:
                self._resync()
                continue
            self._header.clear()
            if self._begin(header):
                started = header.response
        return started

    def _resync(self) -> None:
        """Not a header of ours: skip to the next place one could start."""
        at = self._header.find(UNIT_MAGIC, 1)
        dropped = at if at > 0 else len(self._header) - (len(UNIT_MAGIC) - 1)
        self.garbled += dropped
        del self._header[:dropped]

    def _body(self, data: bytes, i: int) -> int:
        unit = self._unit
        assert unit is not None
        take = min(len(data) - i, unit.length - self._pos)
        if data[i : i + take] != self._expected[self._pos : self._pos + take]:
            self._bad = True
        self._pos += take
        if self._pos == unit.length:
            self._end(unit)
        return i + take

    def _begin(self, header: UnitHeader) -> bool:
        """A unit's header has arrived; True when it is the first of a new reply."""
        self._unit, self._pos, self._bad = header, UNIT_HEADER, False
        self._expected = unit_bytes(header)
        self._counts = False
        if header.response <= self._cut_up_to:
            return False  # cleared: its bytes are counted as stale
        new = header.response not in self.replies
        heard = self.replies.setdefault(header.response, Heard())
        expected = heard.units + heard.gaps
        if header.index < expected:
            self.not_exact += 1  # a repeat
            return False
        heard.gaps += header.index - expected
        self._counts = True
        self.latencies.append((header.sent_ns, self._header_ns))
        return new and header.index == 0

    def _end(self, unit: UnitHeader) -> None:
        self._unit = None
        if unit.response <= self._cut_up_to:
            self.stale += unit.length
        elif self._counts:
            if self._bad:
                self.not_exact += 1
            heard = self.replies[unit.response]
            heard.units += 1
            heard.audio_bytes += unit.length

    def clear(self, playout: Playout, now: float) -> None:
        """A clear arrived: the reply playing, or arriving, is cut where it is."""
        unit, number = self._unit, self.current
        arriving = unit is not None and self._counts
        if unit is not None and self._counts:
            if self._bad:
                self.not_exact += 1  # the part that arrived was already wrong
            self.replies[unit.response].audio_bytes += self._pos
        heard = self.replies.get(number)
        if heard is not None and not heard.cut and (arriving or playout.playing(now)):
            heard.cut = True
            unplayed_ms = playout.queued_s(now) * 1000
            heard.played_ms_at_clear = max(0.0, heard.audio_bytes / BYTES_PER_MS - unplayed_ms)
            self._cut_up_to = max(self._cut_up_to, number)
        self._unit, self._pos, self._bad, self._counts = None, 0, False, False
        self._header.clear()
