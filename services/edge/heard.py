"""What the caller said and what they heard on one stream, placed in time: sans I/O.

The edge sees both sides of a Media Stream: the caller's payloads with Twilio's
``media.timestamp``, every frame and mark it sends to Twilio, Twilio's mark echoes, and the
clears it sends. ``StreamHeard`` turns them into two channels on the stream's timeline (its
``media.timestamp`` clock; positions in samples, 8 per ms):

- **left**, the caller as received: each payload at its timestamp. Nothing is resampled or
  re-timed; a payload whose timestamp is implausibly far from the stream's clock
  (``MAX_SKEW_MS``) is left out and counted, so no bogus timestamp can make a huge file.
- **right**, the model audio as the caller heard it: a mirror of Twilio's playout buffer
  (``shared/playout.py``, the model the call simulator plays as Twilio) fed with the edge's send
  times. Twilio receives each message some ``d1`` later than the edge sent it, and plays what the
  mirror plays ``d1`` later; a clear reaches it ``d1`` later too, so the mirror's position when
  the edge *sent* the clear is Twilio's position when it *got* it: the cut is taken from the
  mirror, whatever ``d1`` is. Placement is the mirror's time plus a lag measured by the echoes:
  an echo arrives ``d1 + d2`` after the mirror reached its mark. A stretch of playback starts
  when its first frame reaches an idle buffer, so its lag is that frame's ``d1`` plus ``d2``:
  each stretch is placed with the smallest of the recent lags measured by its own marks
  (delays only add), or of all recent ones while it has none. The stream's timeline is
  estimated the same way from the caller's frames (``origin``: the smallest arrival minus
  timestamp, which carries the inbound delay ``d2``): the two ``d2`` cancel. Within a stretch
  the lag in use is kept unless the measured one moves by more than ``LAG_TOLERANCE_MS``, so
  echo jitter never puts gaps into continuous speech. Marks echoed for audio a clear dropped
  say nothing and are ignored.

Audio is handed over by ``take``: the right channel only once it has played ``COMMIT_DELAY_MS``
ago (in the mirror), so that a clear can no longer cut it and the lag is measured by then.

Times are the caller's monotonic clock in ms (``now_ms``, never decreasing); nothing here reads
a clock.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from shared.audio import BYTES_PER_MS
from shared.playout import Playback

__all__ = [
    "COMMIT_DELAY_MS",
    "LAG_TOLERANCE_MS",
    "LAG_WINDOW",
    "MAX_LAG_MS",
    "MAX_SKEW_MS",
    "HeardStats",
    "Piece",
    "StreamHeard",
    "Taken",
]

#: How long after playing (in the mirror) right-channel audio is handed over.
COMMIT_DELAY_MS = 500.0
#: Echoes whose lag (echo arrival minus the mirror reaching the mark) is remembered.
LAG_WINDOW = 8
#: A measured lag this close to the one in use does not move continuous playback.
LAG_TOLERANCE_MS = 20.0
#: Lags are kept within [0, MAX_LAG_MS]: an echo later than this is a lost or stuck one.
MAX_LAG_MS = 2000.0
#: Caller frames whose timestamp is further than this from the stream's clock are left out.
MAX_SKEW_MS = 10_000.0
#: Marks awaiting their echo that are remembered (the oldest are forgotten first).
MAX_PENDING_MARKS = 1024
_SAME_MS = 0.01  # mirror times this close are the same instant (float sums of 1/8 ms)


@dataclass(frozen=True, slots=True)
class Piece:
    """Audio on the stream's timeline: its first byte at sample ``at`` (``at / 8`` ms)."""

    at: int
    audio: bytes

    @property
    def end(self) -> int:
        return self.at + len(self.audio)


@dataclass(frozen=True, slots=True)
class Taken:
    """What ``take`` hands over; ``origin_ms``: the stream's timestamp 0 on the caller's clock
    (for a wall-clock anchor)."""

    left: list[Piece]
    right: list[Piece]
    origin_ms: float

    @property
    def empty(self) -> bool:
        return not self.left and not self.right


@dataclass(slots=True)
class HeardStats:
    left_bytes: int = 0  # caller audio placed
    sent_bytes: int = 0  # audio sent to Twilio
    marks_sent: int = 0
    right_bytes: int = 0  # heard audio placed
    unplayed_bytes: int = 0  # sent but never played: cut by a clear, or queued at the end
    clears: int = 0
    skewed_frames: int = 0  # caller frames left out: timestamp implausible
    echoes: int = 0  # mark echoes that measured the lag
    lag_ms: float = 0.0  # the lag in use at the last placement


class _Channel:
    """Pieces waiting to be handed over, contiguous ones merged."""

    def __init__(self) -> None:
        self.pieces: list[tuple[int, bytearray]] = []

    def add(self, at: int, audio: bytes) -> None:
        if self.pieces:
            last_at, last = self.pieces[-1]
            if last_at + len(last) == at:
                last.extend(audio)
                return
        self.pieces.append((at, bytearray(audio)))

    def take(self) -> list[Piece]:
        pieces = [Piece(at, bytes(audio)) for at, audio in self.pieces]
        self.pieces = []
        return pieces


@dataclass(slots=True)
class _Placement:
    """Where the right channel stands: the end of what is placed, on both clocks."""

    end: int = 0  # sample after the last one placed (nothing goes before it)
    mirror_end_ms: float | None = None  # mirror time the last placed byte finished playing
    lag_ms: float = 0.0  # the lag the current stretch is placed with
    stretch: float = 0.0  # the mirror time the current stretch began


@dataclass
class StreamHeard:
    """One stream's two channels, as the edge sees them (module docstring)."""

    started_ms: float  # the caller's clock when the stream attached: local time 0
    stats: HeardStats = field(default_factory=HeardStats)

    def __post_init__(self) -> None:
        self._origin: float | None = None  # local ms of the stream's timestamp 0, once known
        self._mirror = Playback(0.0)
        # A pending mark → (mirror ms it is reached, the stretch it plays in).
        self._marks: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lags: deque[tuple[float, float]] = deque(maxlen=LAG_WINDOW)  # (stretch, lag)
        self._stretch = 0.0  # the mirror time the current stretch of playback began
        self._left = _Channel()
        self._right = _Channel()
        self._placement = _Placement()

    @property
    def _origin_or_attach(self) -> float:
        return 0.0 if self._origin is None else self._origin

    @property
    def origin_ms(self) -> float:
        """The stream's timestamp 0 on the caller's clock, as estimated so far (before the
        first caller frame: when the stream attached)."""
        return self.started_ms + self._origin_or_attach

    def _local(self, now_ms: float) -> float:
        return max(now_ms - self.started_ms, self._mirror.clock_ms)

    # --- the caller ---------------------------------------------------------------------

    def caller_audio(self, timestamp_ms: int, audio: bytes, now_ms: float) -> bool:
        """A caller payload that arrived at ``now_ms``; False when left out (its timestamp is
        more than ``MAX_SKEW_MS`` from the stream's clock)."""
        local = self._local(now_ms)
        if abs(timestamp_ms - (local - self._origin_or_attach)) > MAX_SKEW_MS:
            self.stats.skewed_frames += 1
            return False
        # Each arrival is the timestamp plus some delay: the smallest delay is the best origin.
        origin = local - timestamp_ms
        self._origin = origin if self._origin is None else min(self._origin, origin)
        self._left.add(timestamp_ms * BYTES_PER_MS, audio)
        self.stats.left_bytes += len(audio)
        return True

    # --- what the edge sends, and Twilio's echoes ---------------------------------------

    def sent_audio(self, audio: bytes, now_ms: float) -> None:
        local = self._local(now_ms)
        self._mirror.advance(local)
        if not self._mirror.queued_bytes:
            self._stretch = local  # an idle buffer: a new stretch of playback starts now
        self._mirror.add_audio(audio, local)
        self.stats.sent_bytes += len(audio)

    def sent_mark(self, name: str, now_ms: float) -> None:
        """A mark sent after the audio before it: Twilio reaches it when that has played."""
        self._mirror.advance(self._local(now_ms))
        self._marks[name] = (self._mirror.drained_at(), self._stretch)
        if len(self._marks) > MAX_PENDING_MARKS:
            self._marks.popitem(last=False)
        self.stats.marks_sent += 1

    def mark_echoed(self, name: str, now_ms: float) -> None:
        """Twilio's echo of a mark: measures the lag, unless the mark is unknown or was voided
        by a clear (then its echo says nothing about playback)."""
        if name not in self._marks:
            return
        # Echoes come in order: any mark sent before this one was passed (its echo was lost).
        while True:
            first, (reached, stretch) = self._marks.popitem(last=False)
            if first == name:
                break
        lag = self._local(now_ms) - reached
        self._lags.append((stretch, min(MAX_LAG_MS, max(0.0, lag))))
        self.stats.echoes += 1

    def cleared(self, now_ms: float) -> int:
        """The edge sent ``clear``: what the mirror still queues is dropped, and the marks
        pending are void. Returns the bytes dropped."""
        local = self._local(now_ms)
        self._mirror.advance(local)
        dropped = self._mirror.queued_bytes
        self._mirror.clear(local)
        self._marks.clear()
        self.stats.clears += 1
        self.stats.unplayed_bytes += dropped
        return dropped

    # --- handing over -------------------------------------------------------------------

    def take(self, now_ms: float, final: bool = False) -> Taken:
        """The caller audio received since the last ``take``, and the heard audio that finished
        playing ``COMMIT_DELAY_MS`` ago (``final``: all that played; the stream has ended and
        what is still queued is never heard)."""
        local = self._local(now_ms)
        self._mirror.advance(local)
        if final:
            self.stats.unplayed_bytes += self._mirror.queued_bytes
            self._mirror.clear(local)
        until = local if final else local - COMMIT_DELAY_MS
        for start_ms, audio in self._mirror.take_played(until):
            self._place(start_ms, audio)
        return Taken(self._left.take(), self._right.take(), self.origin_ms)

    def _lag(self, stretch: float) -> float:
        """The smallest recent lag measured in ``stretch`` (its playback started when its first
        frame reached Twilio), else the smallest recent one."""
        own = [lag for measured_in, lag in self._lags if measured_in == stretch]
        return min(own or [lag for _, lag in self._lags], default=0.0)

    def _place(self, start_ms: float, audio: bytes) -> None:
        place = self._placement
        continuing = (
            place.mirror_end_ms is not None and abs(start_ms - place.mirror_end_ms) < _SAME_MS
        )
        if not continuing:
            place.stretch = start_ms
        lag = self._lag(place.stretch)
        if continuing and abs(lag - place.lag_ms) <= LAG_TOLERANCE_MS:
            at = place.end  # the same stretch of playback: no gap, no overlap
        else:
            place.lag_ms = lag
            stream_ms = start_ms + lag - self._origin_or_attach
            at = max(place.end, round(stream_ms * BYTES_PER_MS))
        self._right.add(at, audio)
        place.end = at + len(audio)
        place.mirror_end_ms = start_ms + len(audio) / BYTES_PER_MS
        self.stats.right_bytes += len(audio)
        self.stats.lag_ms = place.lag_ms
