"""The recordings on disk: segment files, the WAV assembled from them, the writer, the retention
sweep and the setting (services/edge/recording_files.py, recording_store.py), in tmp_path."""

from __future__ import annotations

import asyncio
import errno
import io
import logging
import os
import wave
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import pytest
from prometheus_client import CollectorRegistry

from services.edge.heard import Piece, Taken
from services.edge.metrics import EdgeMetrics
from services.edge.recording_files import (
    BLOCK_SAMPLES,
    encode_batch,
    layout,
    segment_name,
    wav_chunks,
)
from services.edge.recording_store import (
    MAX_PENDING_BYTES,
    RecordingStore,
    sweep_interval_s,
)
from services.edge.recording_store import _append as append
from shared.audio import SILENCE_BYTE, ulaw_to_linear
from shared.errors import ConfigError
from tests.support.clock import ManualClock
from tests.support.edge_app import make_settings

pytestmark = pytest.mark.anyio

CALL_SID = "CA" + "1" * 32
OTHER_SID = "CA" + "2" * 32
STREAM_A = "MZ" + "a" * 32
STREAM_B = "MZ" + "b" * 32
WALL_MS = 1_767_225_600_000.0


def write_segment(call_dir: Path, name: str, *batches: bytes) -> Path:
    call_dir.mkdir(parents=True, exist_ok=True)
    path = call_dir / name
    path.write_bytes(b"".join(batches))
    return path


def wav_channels(data: bytes) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.int16]]:
    with wave.open(io.BytesIO(data)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 8000)
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)
    return frames[:, 0].copy(), frames[:, 1].copy()


def rendered(call_dir: Path) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.int16]]:
    plan = layout(call_dir)
    assert plan is not None
    data = b"".join(wav_chunks(plan))
    assert len(data) == plan.wav_bytes
    return wav_channels(data)


def channel(length: int, *pieces: tuple[int, bytes]) -> npt.NDArray[np.int16]:
    """The decoded channel of ``length`` samples with ``pieces`` on silence."""
    audio = bytearray([SILENCE_BYTE]) * length
    for at, data in pieces:
        audio[at : at + len(data)] = data
    return ulaw_to_linear(bytes(audio))


# --- files and assembly ---------------------------------------------------------------------


def test_a_segment_renders_as_a_stereo_wav_with_each_piece_in_place(tmp_path: Path) -> None:
    caller, model = bytes(range(256)) * 2, bytes(range(255, -1, -1)) * 3
    first = encode_batch(Taken([Piece(0, caller)], [Piece(100, model[:300])], 0.0), WALL_MS)
    second = encode_batch(Taken([], [Piece(400, model[300:])], 0.0), WALL_MS + 0.5)
    write_segment(tmp_path / CALL_SID, segment_name(int(WALL_MS), STREAM_A), first, second)
    left, right = rendered(tmp_path / CALL_SID)
    length = 100 + len(model)
    assert len(left) == length
    assert np.array_equal(left, channel(length, (0, caller)))
    assert np.array_equal(right, channel(length, (100, model)))


def test_segments_of_a_failover_are_laid_out_by_their_wall_clock_anchors(tmp_path: Path) -> None:
    call_dir = tmp_path / CALL_SID
    second_wall = WALL_MS + 3000  # the new stream's timestamp 0 came 3 s later
    write_segment(
        call_dir,
        segment_name(int(WALL_MS), STREAM_A),
        encode_batch(Taken([Piece(0, b"\x01" * 800)], [Piece(0, b"\x02" * 400)], 0.0), WALL_MS),
    )
    write_segment(
        call_dir,
        segment_name(int(second_wall), STREAM_B),
        encode_batch(
            Taken([Piece(0, b"\x03" * 800)], [Piece(80, b"\x04" * 160)], 0.0), second_wall
        ),
    )
    plan = layout(call_dir)
    assert plan is not None and plan.segments == 2
    left, right = rendered(call_dir)
    length = 3000 * 8 + 800
    assert np.array_equal(left, channel(length, (0, b"\x01" * 800), (24_000, b"\x03" * 800)))
    assert np.array_equal(right, channel(length, (0, b"\x02" * 400), (24_080, b"\x04" * 160)))


def test_a_record_cut_by_a_crash_ends_the_reading_and_the_rest_still_plays(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    whole = encode_batch(Taken([Piece(0, b"\x05" * 160)], [], 0.0), WALL_MS)
    cut = encode_batch(Taken([Piece(160, b"\x06" * 160)], [], 0.0), WALL_MS)[:-50]
    write_segment(tmp_path / CALL_SID, segment_name(int(WALL_MS), STREAM_A), whole, cut)
    with caplog.at_level(logging.WARNING):
        left, _ = rendered(tmp_path / CALL_SID)
    assert np.array_equal(left, channel(160, (0, b"\x05" * 160)))
    assert "damaged or cut record" in caplog.text


def test_later_writes_win_where_pieces_overlap_and_long_calls_render_block_by_block(
    tmp_path: Path,
) -> None:
    long_piece = b"\x10" * (BLOCK_SAMPLES + 1000)  # spans two blocks
    batch = encode_batch(
        Taken([Piece(0, long_piece), Piece(BLOCK_SAMPLES - 10, b"\x11" * 20)], [], 0.0), WALL_MS
    )
    write_segment(tmp_path / CALL_SID, segment_name(int(WALL_MS), STREAM_A), batch)
    left, right = rendered(tmp_path / CALL_SID)
    expected = channel(len(long_piece), (0, long_piece), (BLOCK_SAMPLES - 10, b"\x11" * 20))
    assert np.array_equal(left, expected)
    assert not right.any()


def test_no_recording_without_a_directory_a_segment_or_audio(tmp_path: Path) -> None:
    assert layout(tmp_path / CALL_SID) is None
    (tmp_path / CALL_SID).mkdir()
    assert layout(tmp_path / CALL_SID) is None
    empty = encode_batch(Taken([], [], 0.0), WALL_MS)
    write_segment(tmp_path / CALL_SID, segment_name(int(WALL_MS), STREAM_A), empty)
    assert layout(tmp_path / CALL_SID) is None


# --- the writer -----------------------------------------------------------------------------


def make_store(
    root: Path, max_pending_bytes: int = MAX_PENDING_BYTES
) -> tuple[RecordingStore, CollectorRegistry, ManualClock]:
    registry, clock = CollectorRegistry(), ManualClock()
    metrics = EdgeMetrics.create(registry)
    store = RecordingStore(root, 3600, metrics, clock, max_pending_bytes=max_pending_bytes)
    return store, registry, clock


def entries(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def test_streams_are_appended_off_the_loop_and_their_end_flushes_everything(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "switchboard.edge.recordings")
    store, registry, clock = make_store(tmp_path)
    writer = asyncio.create_task(store.run_writer())
    try:
        recording = store.open_stream(CALL_SID, STREAM_A)
        start_ms = clock.now * 1000
        recording.heard.caller_audio(0, b"\x21" * 160, start_ms)
        recording.heard.sent_audio(b"\x22" * 160, start_ms)
        clock.advance(0.1)
        recording.flush()  # the caller's frame now; the heard one after the commit delay
        recording.heard.caller_audio(100, b"\x23" * 160, clock.now * 1000)
        recording.close()
        assert recording not in store.streams
        await store.drain(timeout_s=2)
    finally:
        writer.cancel()
    assert recording.path.parent == tmp_path / CALL_SID
    assert recording.written == recording.path.stat().st_size > 480
    left, right = rendered(tmp_path / CALL_SID)
    assert np.array_equal(left, channel(960, (0, b"\x21" * 160), (800, b"\x23" * 160)))
    assert np.array_equal(right, channel(960, (0, b"\x22" * 160)))
    assert sample(registry, "switchboard_edge_recording_segments_total") == 1
    assert sample(registry, "switchboard_edge_recording_bytes_total") == recording.written
    (done,) = [r for r in caplog.records if r.getMessage().startswith("recorded stream")]
    assert getattr(done, "call_sid", None) == CALL_SID
    assert f"{recording.written} bytes written" in done.getMessage()


async def test_a_full_queue_drops_batches_counts_and_logs_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store, registry, clock = make_store(tmp_path, max_pending_bytes=300)
    recording = store.open_stream(CALL_SID, STREAM_A)  # no writer running: nothing drains
    with caplog.at_level(logging.WARNING):
        for index in range(3):
            recording.heard.caller_audio(index * 20, b"\x30" * 160, clock.now * 1000)
            recording.flush()
            clock.advance(0.02)
    assert recording.dropped > 0
    dropped = "switchboard_edge_recording_dropped_bytes_total"
    assert sample(registry, dropped, reason="queue_full") == recording.dropped
    lines = [r for r in caplog.records if "lost" in r.getMessage()]
    assert len(lines) == 1 and getattr(lines[0], "call_sid", None) == CALL_SID


async def test_a_failed_write_is_counted_and_the_writer_goes_on(tmp_path: Path) -> None:
    (tmp_path / CALL_SID).write_text("a file where the call's directory should be")
    store, registry, clock = make_store(tmp_path)
    writer = asyncio.create_task(store.run_writer())
    try:
        broken = store.open_stream(CALL_SID, STREAM_A)
        fine = store.open_stream(OTHER_SID, STREAM_B)
        for recording in (broken, fine):
            recording.heard.caller_audio(0, b"\x40" * 160, clock.now * 1000)
            recording.close()
        await store.drain(timeout_s=2)
    finally:
        writer.cancel()
    assert broken.written == 0 and broken.dropped > 0
    assert fine.written > 0 and fine.path.exists()
    assert (
        sample(registry, "switchboard_edge_recording_dropped_bytes_total", reason="write_error")
        == broken.dropped
    )


class HalfWrites:
    """A file whose writes put down three bytes, then fail as a full disk does."""

    def __init__(self, raw: IO[Any]) -> None:
        self.raw = raw

    def __enter__(self) -> HalfWrites:
        return self

    def __exit__(self, *exc: object) -> None:
        self.raw.close()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.raw.seek(offset, whence)

    def truncate(self, size: int) -> int:
        return self.raw.truncate(size)

    def write(self, data: memoryview) -> int:
        self.raw.write(bytes(data[:3]))
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_write_that_fails_halfway_is_cut_back_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / CALL_SID / segment_name(int(WALL_MS), STREAM_A)
    append(path, b"whole")

    def half_writes(self: Path, mode: str, buffering: int) -> HalfWrites:
        return HalfWrites(open(self, mode, buffering=buffering))

    monkeypatch.setattr(Path, "open", half_writes)
    with pytest.raises(OSError, match="No space"):
        append(path, b"cut short")
    monkeypatch.undo()
    assert path.read_bytes() == b"whole"


# --- retention ------------------------------------------------------------------------------


async def test_the_sweep_deletes_recordings_older_than_the_retention_only(tmp_path: Path) -> None:
    store, registry, clock = make_store(tmp_path)
    now = clock.wall()
    old, fresh, live = "CA" + "3" * 32, "CA" + "4" * 32, "CA" + "5" * 32
    for sid, age_s in ((old, 7200), (fresh, 60), (live, 7200)):
        path = write_segment(tmp_path / sid, segment_name(int(WALL_MS), STREAM_A), b"x")
        os.utime(path, (now - age_s, now - age_s))
        os.utime(path.parent, (now - age_s, now - age_s))
    (tmp_path / "not-a-call").mkdir()
    os.utime(tmp_path / "not-a-call", (now - 7200, now - 7200))
    store.open_stream(live, STREAM_B)  # a call live on this edge is never swept
    assert await store.sweep() == [old]
    assert entries(tmp_path) == sorted([fresh, live, "not-a-call"])
    assert sample(registry, "switchboard_edge_recordings_deleted_total") == 1
    assert await store.sweep() == []


def test_the_sweep_runs_a_tenth_of_the_retention_apart_within_bounds() -> None:
    assert sweep_interval_s(60) == 10
    assert sweep_interval_s(3600) == 360
    assert sweep_interval_s(86_400) == 600


# --- the setting ----------------------------------------------------------------------------


def test_recordings_dir_is_off_by_default_and_must_be_a_writable_directory(tmp_path: Path) -> None:
    assert make_settings().recordings_dir is None
    settings = make_settings(RECORDINGS_DIR=str(tmp_path), CALL_RECORD_RETENTION="600")
    assert settings.recordings_dir == tmp_path and settings.call_record_retention_s == 600
    assert list(tmp_path.iterdir()) == []  # the check left nothing behind
    for bad, why in (
        (tmp_path / "missing", "expected an existing directory"),
        (tmp_path / "file", "expected an existing directory"),
    ):
        (tmp_path / "file").write_text("")
        with pytest.raises(ConfigError, match=f"RECORDINGS_DIR='{bad}': {why}"):
            make_settings(RECORDINGS_DIR=str(bad))


def test_recordings_dir_that_refuses_files_is_refused_at_start_up() -> None:
    # /proc is a directory no one, root included, can create files in: as a volume mounted
    # read-only would be (mode bits alone would not stop root, who runs the tests here).
    with pytest.raises(ConfigError, match="RECORDINGS_DIR='/proc': cannot create files there"):
        make_settings(RECORDINGS_DIR="/proc")
