"""Cutting the canned reply into deltas."""

from __future__ import annotations

import random

from services.realtime_sim.reply import DEFAULT_REPLY_TEXT, default_reply_audio, plan_reply
from shared.audio import FRAME_BYTES


def test_reassembles_exactly_with_irregular_sizes() -> None:
    audio = default_reply_audio()
    chunks = plan_reply(audio, DEFAULT_REPLY_TEXT, random.Random(0))
    assert b"".join(c.audio for c in chunks) == audio
    assert "".join(c.text for c in chunks) == DEFAULT_REPLY_TEXT
    sizes = [len(c.audio) for c in chunks]
    assert len(set(sizes)) > len(sizes) // 2
    assert all(800 <= s <= 4001 and s % FRAME_BYTES for s in sizes[:-1])


def test_seeded() -> None:
    audio = bytes(range(256)) * 100
    first = plan_reply(audio, "a b c", random.Random(7))
    assert first == plan_reply(audio, "a b c", random.Random(7))
    assert first != plan_reply(audio, "a b c", random.Random(8))


def test_text_follows_the_audio() -> None:
    chunks = plan_reply(bytes(20000), "one two three four five six seven eight", random.Random(1))
    said = 0
    for chunk in chunks:
        said += len(chunk.text.split())
    assert said == 8
    assert chunks[-1].text  # the last words come with the last audio, not all up front
    assert chunks[0].text != "one two three four five six seven eight"


def test_no_audio() -> None:
    assert plan_reply(b"", "hi", random.Random(0))[0].text == "hi"
    assert plan_reply(b"", "", random.Random(0)) == []


def test_never_a_whole_number_of_frames() -> None:
    chunks = plan_reply(bytes(1_000_000), "x", random.Random(3))
    sizes = [len(c.audio) for c in chunks[:-1]]
    assert len(sizes) > 300
    assert [s for s in sizes if s % FRAME_BYTES == 0] == []
