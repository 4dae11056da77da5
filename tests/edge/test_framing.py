"""Re-framing model audio into runs of whole 20 ms frames, with marks after the audio they
follow."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.edge.framing import MAX_RUN_BYTES, Frame, FrameMark, Framer, Output
from shared.audio import FRAME_BYTES, SILENCE_BYTE


def _audio(outputs: list[Output]) -> bytes:
    return b"".join(o.audio for o in outputs if isinstance(o, Frame))


def test_whole_frames_pass_at_once_in_one_message() -> None:
    framer = Framer()
    chunk = bytes(range(160)) * 3
    out = framer.audio(chunk)
    assert out == [Frame(chunk)]
    assert framer.held_bytes == 0


def test_a_long_chunk_goes_out_in_runs_of_at_most_a_hundred_ms() -> None:
    framer = Framer()
    chunk = bytes(range(256)) * 10 + b"\x07" * 50  # 2,610 bytes: 16 whole frames and 50 bytes
    out = framer.audio(chunk)
    assert MAX_RUN_BYTES == 800
    assert out == [
        Frame(chunk[0:800]),
        Frame(chunk[800:1600]),
        Frame(chunk[1600:2400]),
        Frame(chunk[2400:2560]),
    ]
    assert framer.held_bytes == 50


def test_remainder_is_held_for_the_next_chunk() -> None:
    framer = Framer()
    assert framer.audio(b"\x01" * 100) == []
    assert framer.held_bytes == 100
    out = framer.audio(b"\x02" * 100)
    assert out == [Frame(b"\x01" * 100 + b"\x02" * 60)]
    assert framer.held_bytes == 40


def test_empty_chunk_changes_nothing() -> None:
    framer = Framer()
    framer.audio(b"\x01" * 10)
    assert framer.audio(b"") == []
    assert framer.held_bytes == 10


def test_mark_with_nothing_held_goes_out_at_once() -> None:
    framer = Framer()
    framer.audio(b"\x01" * 160)
    assert framer.mark("m1") == [FrameMark("m1")]


def test_mark_waits_for_the_held_audio_before_it() -> None:
    framer = Framer()
    framer.audio(b"\x01" * 100)
    assert framer.mark("m1") == []
    out = framer.audio(b"\x02" * 400)  # 500 bytes: three frames, the first ends the held audio
    assert out == [
        Frame(b"\x01" * 100 + b"\x02" * 60),  # alone: the mark goes right after it
        FrameMark("m1"),
        Frame(b"\x02" * 320),
    ]
    assert framer.held_bytes == 20


def test_marks_wait_through_chunks_too_small_for_a_frame() -> None:
    framer = Framer()
    framer.audio(b"\x01" * 100)
    assert framer.mark("a") == []
    assert framer.audio(b"\x02" * 30) == []
    assert framer.mark("b") == []
    assert framer.audio(b"\x03" * 30) == [Frame(b"\x01" * 100 + b"\x02" * 30 + b"\x03" * 30),
                                           FrameMark("a"), FrameMark("b")]  # fmt: skip


def test_finish_pads_the_remainder_with_silence_then_releases_marks() -> None:
    framer = Framer()
    framer.audio(b"\x01" * 170)
    framer.mark("end")
    out = framer.finish()
    assert out == [Frame(b"\x01" * 10 + bytes([SILENCE_BYTE]) * 150), FrameMark("end")]
    assert SILENCE_BYTE == 0xFF
    assert framer.held_bytes == 0
    assert framer.finish() == []


def test_finish_with_nothing_held_sends_no_frame() -> None:
    framer = Framer()
    framer.audio(b"\x01" * 320)
    assert framer.finish() == []


def test_clear_drops_held_audio_and_voids_waiting_marks() -> None:
    framer = Framer()
    framer.audio(b"\x01" * 100)
    framer.mark("a")
    framer.mark("b")
    assert framer.clear() == ["a", "b"]
    assert framer.held_bytes == 0
    assert framer.finish() == []
    # The next item starts on a clean frame boundary.
    assert framer.audio(b"\x02" * 160) == [Frame(b"\x02" * 160)]


def test_clear_with_nothing_waiting() -> None:
    framer = Framer()
    assert framer.clear() == []


Op = tuple[str, bytes | str]
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("audio"), st.binary(max_size=2000)),
        st.tuples(st.just("mark"), st.text(max_size=5)),
        st.tuples(st.just("finish"), st.just("")),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(_ops)
def test_bytes_and_marks_keep_their_order(ops: list[Op]) -> None:
    framer = Framer()
    out: list[Output] = []
    sent = b""  # what went in, with the silence finish() adds
    expected_marks: list[tuple[str, int]] = []  # (name, bytes that must precede it)
    for op, arg in ops:
        if op == "audio":
            assert isinstance(arg, bytes)
            sent += arg
            out += framer.audio(arg)
        elif op == "mark":
            assert isinstance(arg, str)
            expected_marks.append((arg, len(sent)))
            out += framer.mark(arg)
        else:
            held = framer.held_bytes
            if held:
                sent += bytes([SILENCE_BYTE]) * (FRAME_BYTES - held)
            out += framer.finish()
    out += framer.finish()
    if len(sent) % FRAME_BYTES:
        sent += bytes([SILENCE_BYTE]) * (FRAME_BYTES - len(sent) % FRAME_BYTES)

    runs = [len(o.audio) for o in out if isinstance(o, Frame)]
    assert all(size % FRAME_BYTES == 0 and 0 < size <= MAX_RUN_BYTES for size in runs)
    assert _audio(out) == sent  # bit-exact, in order, nothing lost or duplicated
    # Each mark comes after all the audio queued before it, at the first frame boundary.
    position = 0
    marks: list[tuple[str, int]] = []
    for o in out:
        if isinstance(o, Frame):
            position += len(o.audio)
        else:
            marks.append((o.name, position))
    assert [name for name, _ in marks] == [name for name, _ in expected_marks]
    for (_, at), (_, needed) in zip(marks, expected_marks, strict=True):
        assert needed <= at < needed + FRAME_BYTES
