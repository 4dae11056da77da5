"""The call's own recording through the edge app: a stream driven like Twilio drives it, a worker
played through Redis, the edge's clock set by the test; then GET /calls/{sid}/recording."""

from __future__ import annotations

import io
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from services.edge.heard import HeardStats
from services.edge.recording_store import StreamRecording
from shared.audio import SILENCE_BYTE, ulaw_to_linear
from shared.keys import CallField
from shared.messages import ClearPlayback, MarkPlayed, OutboundAudio, PlaybackMark
from tests.support import twilio_frames as tf
from tests.support.clock import ManualClock
from tests.support.edge_app import Edge, make_settings, receive_json, running_edge, send
from tests.support.waiting import eventually_sync

TOKEN = "admin-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def recording_edge(tmp_path: Path) -> Iterator[tuple[Edge, ManualClock]]:
    settings = make_settings(ADMIN_TOKEN=TOKEN, RECORDINGS_DIR=str(tmp_path))
    with running_edge(settings) as edge:
        clock = ManualClock()
        store = edge.runtime.recordings
        assert store is not None
        edge.runtime.clock = store.clock = clock  # before any stream attaches
        yield edge, clock


def the_recording(edge: Edge) -> StreamRecording:
    store = edge.runtime.recordings
    assert store is not None
    (recording,) = store.streams
    return recording


def settled(edge: Edge, done: Callable[[HeardStats], bool]) -> None:
    """Wait until the edge has told the recording what the test just caused: the clock may
    move only then."""
    eventually_sync(lambda: done(the_recording(edge).heard.stats))


def caller_bytes_are(count: int) -> Callable[[HeardStats], bool]:
    return lambda stats: stats.left_bytes == count


def wav_channels(data: bytes) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.int16]]:
    with wave.open(io.BytesIO(data)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 8000)
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)
    return frames[:, 0].copy(), frames[:, 1].copy()


def on_silence(length: int, *pieces: tuple[int, bytes]) -> npt.NDArray[np.int16]:
    audio = bytearray([SILENCE_BYTE]) * length
    for at, data in pieces:
        audio[at : at + len(data)] = data
    return ulaw_to_linear(bytes(audio))


def test_the_recording_holds_what_the_caller_said_and_heard_up_to_the_clear(
    recording_edge: tuple[Edge, ManualClock],
) -> None:
    edge, clock = recording_edge
    caller = [bytes([0x10 + n]) * 160 for n in range(4)]
    first_reply = bytes(range(256)) * 3 + bytes(32)  # 800 bytes: 100 ms
    second_reply = bytes(range(255, -1, -1)) * 6 + bytes(64)  # 1600 bytes: 200 ms
    token = edge.answer()
    with edge.call(token) as ws:  # attached at the clock's 100.000 s: the stream's 0 ms
        for n in range(3):
            send(ws, tf.media(caller[n], timestamp=str(20 * n)))
            settled(edge, caller_bytes_are(160 * (n + 1)))
            clock.advance(0.020)
        # 60 ms: the model's first reply, sent at once, and its mark.
        edge.publish(OutboundAudio(first_reply, "item_1", time.time()))
        edge.publish(PlaybackMark("item_1:1"))
        assert receive_json(ws)["event"] == "media"  # 100 ms: one message
        assert receive_json(ws) == {
            "event": "mark",
            "streamSid": tf.STREAM_SID,
            "mark": {"name": "item_1:1"},
        }
        settled(edge, lambda s: s.marks_sent == 1)
        # 180 ms: Twilio echoes it, 20 ms after the edge's mirror finished the reply.
        clock.advance(0.120)
        send(ws, tf.mark("item_1:1"))
        eventually_sync(lambda: MarkPlayed("item_1:1") in edge.inbound())
        settled(edge, lambda s: s.echoes == 1)
        send(ws, tf.media(caller[3], timestamp="180"))  # a frame after a gap
        settled(edge, caller_bytes_are(640))
        # 200 ms: the second reply; the caller barges in 50 ms into it.
        clock.advance(0.020)
        edge.publish(OutboundAudio(second_reply, "item_2", time.time()))
        edge.publish(PlaybackMark("item_2:2"))
        for _ in range(2):  # 200 ms: two messages of 100 ms
            assert receive_json(ws)["event"] == "media"
        assert receive_json(ws)["event"] == "mark"
        settled(edge, lambda s: s.marks_sent == 2)
        clock.advance(0.050)
        edge.publish(ClearPlayback("item_2"))
        assert receive_json(ws)["event"] == "clear"
        settled(edge, lambda s: s.clears == 1)
        send(ws, tf.mark("item_2:2"))  # echoed at once by the clear: says nothing
        clock.advance(1.0)
        send(ws, tf.stop())
        eventually_sync(lambda: edge.record().get(CallField.STATE) == "ended")
    store = edge.runtime.recordings
    assert store is not None and not store.streams

    # Heard: the first reply from 60 + 20 (the lag its echo measured) ms, whole; the second
    # from its send at 200 + 20 ms, cut 50 ms (400 bytes) in, where the clear was sent.
    length = 220 * 8 + 400

    def fetched() -> bytes:
        """The WAV once the writer (a thread) has written the stream's last batch."""
        response = edge.client.get(f"/calls/{tf.CALL_SID}/recording", headers=AUTH)
        if response.status_code == 404:
            return b""
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "audio/wav"
        return bytes(response.content) if len(response.content) == 44 + 4 * length else b""

    left, right = wav_channels(eventually_sync(fetched))
    heard = [(80 * 8, first_reply), (220 * 8, second_reply[:400])]
    assert np.array_equal(right, on_silence(length, *heard))
    said = [(0, b"".join(caller[:3])), (180 * 8, caller[3])]
    assert np.array_equal(left, on_silence(length, *said))
    (segment,) = (store.root / tf.CALL_SID).iterdir()
    assert edge.metric("switchboard_edge_recording_segments_total") == 1
    assert edge.metric("switchboard_edge_recording_bytes_total") == segment.stat().st_size


def test_the_recording_route_needs_the_admin_token_and_a_recording(
    recording_edge: tuple[Edge, ManualClock],
) -> None:
    edge, _ = recording_edge
    path = f"/calls/{tf.CALL_SID}/recording"
    assert edge.client.get(path).status_code == 401
    assert edge.client.get(path, headers={"Authorization": "Bearer nope"}).status_code == 401
    for sid in (tf.CALL_SID, "not-a-sid", "CA" + "0" * 32):
        response = edge.client.get(f"/calls/{sid}/recording", headers=AUTH)
        assert response.status_code == 404
        assert response.json() == {"error": "no recording of this call"}


def test_without_recordings_dir_nothing_is_recorded_and_the_route_says_so() -> None:
    with running_edge(make_settings(ADMIN_TOKEN=TOKEN)) as edge:
        assert edge.runtime.recordings is None
        token = edge.answer()
        with edge.call(token) as ws:
            send(ws, tf.media(b"\x01" * 160, timestamp="0"))
            send(ws, tf.stop())
        response = edge.client.get(f"/calls/{tf.CALL_SID}/recording", headers=AUTH)
        assert response.status_code == 404
