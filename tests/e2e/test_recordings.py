"""Switchboard's own recording of a call with a barge-in, against the call simulator's ground
truth: what its playout buffer played, by its clock, until the clear (``StreamAudio.played``),
and the caller's audio it sent (``StreamAudio.sent``). Real processes, real sockets."""

from __future__ import annotations

import asyncio
import io
import random
import signal
import urllib.error
import urllib.request
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from services.call_sim import place_call
from services.call_sim.report import StreamAudio
from services.devstack import Stack
from shared.audio import BYTES_PER_MS, ulaw_to_linear
from tests.support.calls import (
    CALLER_AUDIO,
    SILENCE,
    item_audio,
    padded,
    short_reply,
    sim_session,
)
from tests.support.stack import ADMIN_TOKEN, StackFactory, call_config, wait_for_audio_out
from tests.support.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

Channel = npt.NDArray[np.int16]

#: How far from where the simulator played it each stretch of heard audio may be placed. On an
#: idle machine the error is a few ms (the simulator's and the edge's event loops waking late);
#: a busy 2-core machine running the suite in parallel adds its scheduling delays.
PLACEMENT_TOLERANCE_MS = 120
#: How many ms more or less of the interrupted reply the recording may hold than the simulator
#: played before the clear reached it: the edge cuts where its mirror of the buffer was when it
#: sent the clear, so the error is the variation of the edge → simulator delay.
CUT_TOLERANCE_MS = 80


def fetch_recording(stack: Stack, call_sid: str) -> bytes | None:
    request = urllib.request.Request(
        f"{stack.edge_admin_urls[0]}/calls/{call_sid}/recording",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.headers["Content-Type"] == "audio/wav"
            data: bytes = response.read()
            return data
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def stereo(data: bytes) -> tuple[Channel, Channel]:
    with wave.open(io.BytesIO(data)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 8000)
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)
    return frames[:, 0].copy(), frames[:, 1].copy()


@dataclass
class Found:
    at: int  # sample of the recording's right channel
    expected: int  # where the simulator played it (sample on the stream's timeline)
    length: int  # samples of the simulator's segment


def locate(right: Channel, audio: bytes, expected: int, compare: int) -> int:
    """Where the first ``compare`` samples of ``audio`` are in ``right``, searched within the
    placement tolerance of ``expected``."""
    probe = ulaw_to_linear(audio[:compare])
    window = PLACEMENT_TOLERANCE_MS * BYTES_PER_MS
    hits = [
        at
        for at in range(max(0, expected - window), expected + window + 1)
        if np.array_equal(right[at : at + compare], probe)
    ]
    assert len(hits) == 1, f"segment expected at {expected / 8} ms: found at {hits}"
    return hits[0]


def matching(right: Channel, at: int, audio: bytes) -> int:
    """How many samples from ``at`` on equal ``audio``, from its start."""
    expected = ulaw_to_linear(audio)
    got = right[at : at + len(expected)]
    differ = np.flatnonzero(got != expected[: len(got)])
    return int(differ[0]) if differ.size else len(got)


async def test_own_recording_of_a_barge_in_is_what_the_caller_heard_where_they_heard_it(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    stack = make_stack(
        workers=1,
        sim_args=short_reply(tmp_path, 4.0),
        edge_env={"ADMIN_TOKEN": ADMIN_TOKEN, "RECORDINGS_DIR": str(recordings)},
    )
    # As test_conversation's barge-in: speak, let the 4 s reply play about 2 s, speak over it,
    # then hear the second reply to its end.
    gap = SILENCE * (25 * 800)  # 2.5 s
    report = await place_call(call_config(stack, CALLER_AUDIO + gap + CALLER_AUDIO, hold_s=4.0))
    assert report.problems() == []
    assert report.clears == 1
    (stream,) = report.streams
    assert isinstance(stream, StreamAudio) and stream.sent_at_ms is not None
    first, unpadded = item_audio(sim_session(stack)).values()
    second = padded(unpadded)  # as the edge sends a reply: whole frames

    # The edge says when the stream's last batch is on disk.
    await eventually(lambda: "recorded stream" in stack.edges[0].log(), 10, "the recording")
    data = fetch_recording(stack, report.call_sid)
    assert data is not None
    left, right = stereo(data)

    # Left: the caller's audio as the edge received it, bit-exact, from the stream's 0 ms.
    said = ulaw_to_linear(stream.sent)
    assert np.array_equal(left[: len(said)], said)
    assert not left[len(said) :].any()

    # Right: each stretch the simulator played, where it played it.
    played = [(round((start - stream.sent_at_ms) * 8), audio) for start, audio in stream.played]
    heard = b"".join(audio for _, audio in played)
    assert heard == report.heard_audio and heard.endswith(second)
    cut_end = len(heard) - len(second)  # the bytes of the first reply played before the clear
    assert 0 < cut_end < len(first) and first.startswith(heard[:cut_end])
    covered = np.zeros(len(right), dtype=bool)
    found: list[Found] = []
    cut_error = 0
    position = 0  # in heard
    cut_bound = CUT_TOLERANCE_MS * BYTES_PER_MS
    for expected, audio in played:
        interrupted = position < cut_end <= position + len(audio)
        compare = len(audio) - cut_bound if interrupted else len(audio)
        at = locate(right, audio, expected, max(compare, min(len(audio), 160)))
        found.append(Found(at, expected, len(audio)))
        length = len(audio)
        if interrupted:
            # How much of the first reply the recording holds from here, against what played.
            rest = first[position:]
            length = matching(right, at, rest)
            cut_error = length - len(audio)
        else:
            assert matching(right, at, audio) == len(audio)
        covered[at : at + length] = True
        position += len(audio)

    placement_ms = [(f.at - f.expected) / BYTES_PER_MS for f in found]
    print(
        f"\nown recording: {len(found)} stretches placed {placement_ms} ms from where the "
        f"simulator played them; cut {cut_error / BYTES_PER_MS:+.3f} ms ({cut_error:+d} bytes) "
        f"from what it played before the clear"
    )
    assert all(abs(error) <= PLACEMENT_TOLERANCE_MS for error in placement_ms)
    assert abs(cut_error) <= cut_bound, cut_error
    # Nothing else: no byte of the interrupted rest past the cut, no stray audio anywhere.
    assert not right[~covered].any()


def longest_kept_prefix(channel: Channel, audio: bytes) -> tuple[int, int]:
    """Where in ``channel`` the longest prefix of ``audio`` (whole 20 ms frames) lies, and how
    many bytes of it are there: what of a stream's caller audio reached the recording."""
    haystack = channel.tobytes()

    def position(length: int) -> int:
        at = haystack.find(ulaw_to_linear(audio[:length]).tobytes())
        return at // 2 if at >= 0 and at % 2 == 0 else -1

    low, high = 0, len(audio) // 160  # frames: position(low * 160) holds, high may not
    assert position(160) >= 0, "not even the stream's first frame was recorded"
    low = 1
    while low < high:
        middle = (low + high + 1) // 2
        if position(middle * 160) >= 0:
            low = middle
        else:
            high = middle - 1
    return position(low * 160), low * 160


async def test_an_edge_failover_keeps_what_was_written_and_records_the_rest(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    env = {"ADMIN_TOKEN": ADMIN_TOKEN, "RECORDINGS_DIR": str(recordings)}
    stack = make_stack(edges=2, workers=1, sim_mode="echo", edge_env=env)
    audio = random.Random(21).randbytes(8 * 8000)
    config = call_config(stack, audio, hold_s=1.0, abrupt_drop="continue", reconnect_delay_s=0.5)
    task = asyncio.create_task(place_call(config))
    await wait_for_audio_out(stack, 3 * 8000)  # well under way on the first edge
    first_edge = stack.edges[0]
    first_edge.signal(signal.SIGKILL)
    report = await task
    assert first_edge.popen.wait(timeout=5) == -signal.SIGKILL
    stack.edges.remove(first_edge)
    assert report.problems() == [] and len(report.streams) == 2

    await eventually(lambda: "recorded stream" in stack.edges[0].log(), 10, "the recording")
    data = fetch_recording(stack, report.call_sid)
    assert data is not None
    left, _ = stereo(data)
    before, after = report.streams
    at_before, kept = longest_kept_prefix(left, before.sent)
    at_after, kept_after = longest_kept_prefix(left, after.sent)
    lost_ms = (len(before.sent) - kept) / BYTES_PER_MS
    print(
        f"\nedge failover: the killed edge's recording kept {kept / BYTES_PER_MS:.0f} of "
        f"{len(before.sent) / BYTES_PER_MS:.0f} ms of the caller; {lost_ms:.0f} ms lost (not yet "
        f"on disk when it died); the new edge's stream recorded whole"
    )
    # Written every 0.5 s: at most about a second goes with a killed edge.
    assert lost_ms <= 1500
    assert kept_after == len(after.sent) // 160 * 160  # the new stream, whole
    assert at_after > at_before + kept  # after the first, on the call's timeline
