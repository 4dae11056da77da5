"""Writing Switchboard's own recordings under RECORDINGS_DIR, and deleting them after
CALL_RECORD_RETENTION (docs/recordings.md).

Each stream attached to this edge is a ``StreamRecording``: the pure model of what was said and
heard (``heard.py``) and the segment file it is appended to (``recording_files.py``). Three
loops run while the edge does:

- the flusher hands every open stream's new audio to the writer each ``FLUSH_INTERVAL_S``;
- the writer appends the batches in a thread (``asyncio.to_thread``), never on the event loop.
  What waits for it is bounded (``MAX_PENDING_BYTES``): past that a batch is dropped, counted and
  logged once per stream, and the call goes on untouched;
- the sweeper deletes the calls whose newest file is older than the retention.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from services.edge.heard import StreamHeard
from services.edge.metrics import EdgeMetrics
from services.edge.recording_files import encode_batch, segment_name
from services.edge.twilio_protocol import CALL_SID_RE
from shared.clock import Clock
from shared.logs import CallLog

__all__ = [
    "FLUSH_INTERVAL_S",
    "MAX_PENDING_BYTES",
    "RecordingStore",
    "StreamRecording",
    "sweep_interval_s",
]

logger = logging.getLogger("switchboard.edge.recordings")

#: How often new audio is handed to the writer: an edge that dies loses at most about this
#: much, plus heard audio's COMMIT_DELAY_MS (heard.py).
FLUSH_INTERVAL_S = 0.5
#: Bytes waiting for the writer, at most, across all calls (some 4 s of 500 calls' audio).
MAX_PENDING_BYTES = 32 * 1024 * 1024


def sweep_interval_s(retention_s: float) -> float:
    """How often the sweeper looks: a tenth of the retention, from 10 s to 10 minutes."""
    return min(600.0, max(10.0, retention_s / 10))


@dataclass(eq=False)
class StreamRecording:
    """One stream's recording on this edge: feed ``heard`` as the stream goes."""

    store: RecordingStore
    call_sid: str
    stream_sid: str
    path: Path
    heard: StreamHeard
    attached_wall_ms: float  # the wall clock at heard's local time 0
    log: CallLog
    written: int = 0
    dropped: int = 0

    def flush(self, final: bool = False) -> None:
        """Hand what is new to the writer (``final``: everything; the stream has ended, and
        the writer says so once it is written)."""
        now_ms = self.store.clock.monotonic() * 1000
        taken = self.heard.take(now_ms, final)
        if taken.empty and not final:
            return
        anchor = self.attached_wall_ms + taken.origin_ms - self.heard.started_ms
        data = b"" if taken.empty else encode_batch(taken, anchor)
        self.store.submit(self, data, final)

    def close(self) -> None:
        """The stream has ended: the last of its audio goes to the writer."""
        self.store.streams.discard(self)
        self.flush(final=True)

    def completed(self) -> None:
        """The writer has handled the last batch: one line for the whole stream."""
        stats = self.heard.stats
        self.log.info(
            "recorded stream %s: %.1f s of the caller, %.1f s heard (lag %.0f ms over %d "
            "echoes), %.1f s sent but never played, %d caller frames left out (timestamp); "
            "%d bytes written to %s, %d dropped",
            self.stream_sid,
            stats.left_bytes / 8000,
            stats.right_bytes / 8000,
            stats.lag_ms,
            stats.echoes,
            stats.unplayed_bytes / 8000,
            stats.skewed_frames,
            self.written,
            self.path,
            self.dropped,
        )


@dataclass(eq=False)
class RecordingStore:
    """RECORDINGS_DIR on this edge: its open streams, the writer's queue, the sweeper."""

    root: Path
    retention_s: float
    metrics: EdgeMetrics
    clock: Clock
    streams: set[StreamRecording] = field(default_factory=set)
    max_pending_bytes: int = MAX_PENDING_BYTES

    def __post_init__(self) -> None:
        self._queue: deque[tuple[StreamRecording, bytes, bool]] = deque()
        self._pending_bytes = 0
        self._queued = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def open_stream(self, call_sid: str, stream_sid: str) -> StreamRecording:
        wall_ms = self.clock.wall_ms()
        recording = StreamRecording(
            store=self,
            call_sid=call_sid,
            stream_sid=stream_sid,
            path=self.root / call_sid / segment_name(wall_ms, stream_sid),
            heard=StreamHeard(self.clock.monotonic() * 1000),
            attached_wall_ms=wall_ms,
            log=CallLog(logger, call_sid),
        )
        self.streams.add(recording)
        self.metrics.recording_segments.inc()
        recording.log.info("recording stream %s to %s", stream_sid, recording.path)
        return recording

    # --- the writer ---------------------------------------------------------------------

    def submit(self, recording: StreamRecording, data: bytes, final: bool = False) -> None:
        """Queue a batch for the writer, or drop it when too much is waiting already
        (``final``: the stream's last, which is queued empty then, so that its end is told)."""
        if self._pending_bytes + len(data) > self.max_pending_bytes:
            self._dropped(recording, len(data), "queue_full")
            data = b""
            if not final:
                return
        self._queue.append((recording, data, final))
        self._pending_bytes += len(data)
        self._idle.clear()
        self._queued.set()

    def _dropped(
        self, recording: StreamRecording, size: int, reason: str, detail: str = ""
    ) -> None:
        self.metrics.recording_dropped_bytes.labels(reason).inc(size)
        if not recording.dropped:  # the first says what; the counter says how often
            recording.log.warning(
                "recording of stream %s lost %d bytes (%s%s); the call goes on",
                recording.stream_sid,
                size,
                reason,
                f": {detail}" if detail else "",
            )
        recording.dropped += size

    async def run_writer(self) -> None:
        while True:
            await self._queued.wait()
            self._queued.clear()
            batch = list(self._queue)
            self._queue.clear()
            try:
                failures = await asyncio.to_thread(_append_all, batch)
            finally:
                self._pending_bytes -= sum(len(data) for _, data, _ in batch)
            for index, (recording, data, final) in enumerate(batch):
                if index in failures:
                    self._dropped(recording, len(data), "write_error", failures[index])
                else:
                    recording.written += len(data)
                    self.metrics.recording_bytes.inc(len(data))
                if final:
                    recording.completed()
            if not self._queue:
                self._idle.set()

    async def run_flusher(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            for recording in list(self.streams):
                recording.flush()

    async def drain(self, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) until the writer has written everything queued."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            logger.warning("recordings: %d bytes still unwritten at shutdown", self._pending_bytes)

    # --- retention ----------------------------------------------------------------------

    async def sweep(self) -> list[str]:
        """Delete the recordings of calls not written to for ``retention_s``; their sids."""
        cutoff = self.clock.wall() - self.retention_s
        live = {recording.call_sid for recording in self.streams}
        deleted = await asyncio.to_thread(_sweep, self.root, cutoff, live)
        for call_sid in deleted:
            self.metrics.recordings_deleted.inc()
            CallLog(logger, call_sid).info(
                "deleted the call's recording: older than CALL_RECORD_RETENTION (%.0f s)",
                self.retention_s,
            )
        return deleted

    async def run_sweeper(self) -> None:
        while True:
            await self.sweep()
            await asyncio.sleep(sweep_interval_s(self.retention_s))


def _append_all(batch: list[tuple[StreamRecording, bytes, bool]]) -> dict[int, str]:
    """Append each batch to its file (blocking: run in a thread); the failures by index."""
    failures: dict[int, str] = {}
    for index, (recording, data, _) in enumerate(batch):
        if not data:
            continue
        try:
            _append(recording.path, data)
        except OSError as exc:
            failures[index] = str(exc)
    return failures


def _append(path: Path, data: bytes) -> None:
    """Append ``data`` whole or not at all: what a failed write left is cut off again, so the
    next batch does not land behind half a record (which would end the file's reading)."""
    path.parent.mkdir(exist_ok=True)
    with path.open("ab", buffering=0) as file:
        start = file.seek(0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:
                view = view[file.write(view) :]
        except OSError:
            file.truncate(start)
            raise


def _newest_mtime(call_dir: Path) -> float:
    newest = call_dir.stat().st_mtime
    for entry in os.scandir(call_dir):
        newest = max(newest, entry.stat().st_mtime)
    return newest


def _sweep(root: Path, cutoff: float, live: set[str]) -> list[str]:
    """Delete call directories whose newest file predates ``cutoff`` (blocking: a thread).
    Other edges sweep the same volume: what vanishes meanwhile was deleted by one of them."""
    deleted = []
    for entry in os.scandir(root):
        if not entry.is_dir() or not CALL_SID_RE.fullmatch(entry.name) or entry.name in live:
            continue
        call_dir = Path(entry.path)
        try:
            if _newest_mtime(call_dir) >= cutoff:
                continue
            shutil.rmtree(call_dir)
        except FileNotFoundError:
            continue
        except OSError as exc:
            CallLog(logger, entry.name).warning("could not delete the call's recording: %s", exc)
            continue
        deleted.append(entry.name)
    return deleted
