"""The canned reply cut into deltas, and the defaults it is built from.

Chunk sizes are drawn from a seeded generator and never a multiple of one 20 ms frame, because
the real model's deltas do not line up with Twilio frames either and the edge's re-framing must
be exercised. Transcript words are handed out in proportion to the audio sent so far.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final

from shared.audio import FRAME_BYTES

__all__ = [
    "DEFAULT_CALLER_TRANSCRIPT",
    "DEFAULT_REPLY_TEXT",
    "ReplyChunk",
    "default_reply_audio",
    "plan_reply",
]

DEFAULT_REPLY_TEXT: Final = (
    "Thanks for calling Switchboard. Your order shipped this morning, and it will arrive on "
    "Thursday. Is there anything else I can help you with?"
)
DEFAULT_CALLER_TRANSCRIPT: Final = "Hi, I would like to know when my order will arrive."
REPLY_ASSET: Final = Path(__file__).parent / "assets" / "reply.ulaw"


@cache
def default_reply_audio() -> bytes:
    """The bundled reply clip: μ-law, 8 kHz, mono, no header."""
    return REPLY_ASSET.read_bytes()


@dataclass(frozen=True, slots=True)
class ReplyChunk:
    audio: bytes  # raw μ-law for one response.output_audio.delta
    text: str  # transcript piece sent alongside it ("" for none)


def _sizes(total: int, rng: random.Random, low: int, high: int) -> list[int]:
    sizes: list[int] = []
    while sum(sizes) < total:
        size = rng.randint(low, high)
        if size % FRAME_BYTES == 0:
            size += 1
        sizes.append(min(size, total - sum(sizes)))
    return sizes


def plan_reply(
    audio: bytes, text: str, rng: random.Random, low: int = 800, high: int = 4000
) -> list[ReplyChunk]:
    """Split a reply into delta-sized chunks; audio and text concatenate back to the inputs."""
    if not audio:
        return [ReplyChunk(b"", text)] if text else []
    words = re.findall(r"\S+\s*", text)
    lead = text[: len(text) - len(text.lstrip())]
    chunks: list[ReplyChunk] = []
    offset = words_out = 0
    for size in _sizes(len(audio), rng, low, high):
        offset += size
        due = len(words) * offset // len(audio)
        piece = "".join(words[words_out:due])
        if not chunks:
            piece = lead + piece
        chunks.append(ReplyChunk(audio[offset - size : offset], piece))
        words_out = due
    return chunks
