"""``python -m services.doctor.tune_detector``: measure the outbound-audio detector.

Speech clips are generated with espeak-ng and converted with sox (apt-get install espeak-ng
sox); without them only the shipped speech assets are used. Every clip, and a set of tones,
DTMF, sweeps, noise and silence, is played as correct μ-law and in each wrong format, from
several starting points, in deltas of varied sizes, through ``OutboundInspector``. Printed:
per material, how often the right verdict came within the first second (8000 bytes), and how
often correct μ-law raised a fault (false alarm).
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import wave
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np

from shared.audio import SAMPLE_RATE
from shared.audio_check import FAULT_KINDS, WINDOW_BYTES, AudioVerdict, OutboundInspector

from .corpus import WRONG_FORMATS, Signal, asset_speech, correct_signals, to_ulaw

__all__ = ["Tally", "espeak_clips", "inspect_stream", "main", "starts"]

SENTENCES: Final = (
    "Hello, thanks for calling. How can I help you today?",
    "Your appointment is confirmed for Tuesday at three thirty in the afternoon.",
    "I am sorry, I did not catch that. Could you say your account number again?",
    "Please hold on a moment while I look that up for you.",
    "The weather tomorrow will be sunny with a light breeze from the west.",
    "One, two, three, four, five, six, seven, eight, nine, ten.",
)
VOICES: Final = ("en-us", "en-gb", "en-us+f3", "en-gb-scotland+m3", "de", "fr")
LEVELS_DBFS: Final = (-30.0, -20.0, -10.0)  # RMS of the clip
START_STEP_S: Final = 0.25


def espeak_clips(workdir: Path) -> Iterator[tuple[str, Signal]]:
    """Speech clips at 8 kHz (float, RMS-normalised per level) made by espeak-ng and sox."""
    for v, voice in enumerate(VOICES):
        for s, sentence in enumerate(SENTENCES):
            raw, narrow = workdir / f"{v}-{s}.wav", workdir / f"{v}-{s}-8k.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), sentence], check=True)
            # sox: telephone band, 8 kHz mono 16-bit, as a phone network would carry it.
            subprocess.run(
                ["sox", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(narrow)]
                + ["sinc", "300-3400"],
                check=True,
            )
            with wave.open(str(narrow), "rb") as clip:
                pcm = np.frombuffer(clip.readframes(clip.getnframes()), dtype="<i2")
            speech = pcm.astype(np.float64) / 32768
            rms = float(np.sqrt(np.mean(speech**2))) or 1.0
            for level in LEVELS_DBFS:
                scaled = np.clip(speech * (10 ** (level / 20) / rms), -1, 1)
                yield f"espeak {voice} #{s} {level:.0f} dBFS", scaled


def starts(signal: Signal, step_s: float = START_STEP_S) -> list[int]:
    """Starting samples: the clip from its beginning, and from every ``step_s`` while at least
    one second is left (a reply may begin mid-word after a barge-in)."""
    last = max(len(signal) - SAMPLE_RATE, 0)
    return list(range(0, last + 1, int(step_s * SAMPLE_RATE)))


def inspect_stream(data: bytes, rng: random.Random) -> AudioVerdict | None:
    """Feed ``data`` in delta-sized chunks; the verdict given within the first second."""
    inspector = OutboundInspector()
    offset = 0
    while offset < min(len(data), WINDOW_BYTES):
        size = rng.choice((160, 800, 1200, 3200, rng.randint(1, 4000)))
        verdict = inspector.feed(data[offset : offset + size])
        offset += size
        if verdict is not None:
            return verdict
    return inspector.finish()


@dataclass
class Tally:
    trials: int = 0
    hits: int = 0  # the expected kind
    kinds: Counter[str] = field(default_factory=Counter)
    bytes_to_verdict: list[int] = field(default_factory=list)

    def add(self, verdict: AudioVerdict | None, expected: str) -> None:
        self.trials += 1
        kind = verdict.kind if verdict else "none"
        self.kinds[kind] += 1
        if kind == expected:
            self.hits += 1
            assert verdict is not None
            self.bytes_to_verdict.append(verdict.bytes_examined)

    def rate(self) -> float:
        return self.hits / self.trials if self.trials else 0.0


def _trials(signal: Signal, converter_name: str | None) -> Iterator[bytes]:
    for start in starts(signal):
        piece = signal[start:]
        if converter_name is None:
            yield to_ulaw(piece)
        else:
            yield WRONG_FORMATS[converter_name][0](piece)
        if converter_name == "wav header":
            break  # a header is only ever at the start


def evaluate(material: dict[str, Signal], seed: int = 0) -> dict[str, Tally]:
    """Rows: "correct μ-law", each wrong format; all over ``material``."""
    rng = random.Random(seed)
    rows = {"correct μ-law": Tally()} | {name: Tally() for name in WRONG_FORMATS}
    for signal in material.values():
        for data in _trials(signal, None):
            rows["correct μ-law"].add(inspect_stream(data, rng), "ok")
        for name, (_, expected) in WRONG_FORMATS.items():
            for data in _trials(signal, name):
                rows[name].add(inspect_stream(data, rng), expected)
    return rows


def _print_table(title: str, rows: dict[str, Tally]) -> None:
    print(f"\n{title}")
    print(f"{'stream':<16} {'trials':>7} {'right':>8} {'faults':>8} {'median B':>9}  verdicts")
    for name, tally in rows.items():
        median = int(np.median(tally.bytes_to_verdict)) if tally.bytes_to_verdict else 0
        faults = sum(n for k, n in tally.kinds.items() if k in FAULT_KINDS) / tally.trials
        kinds = ", ".join(f"{k} {n}" for k, n in tally.kinds.most_common())
        print(
            f"{name:<16} {tally.trials:>7} {tally.rate():>8.2%} {faults:>8.2%} {median:>9}  {kinds}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.doctor.tune_detector", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--no-espeak", action="store_true", help="shipped speech assets only")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    speech = asset_speech()
    have_tools = shutil.which("espeak-ng") and shutil.which("sox")
    if not args.no_espeak and have_tools:
        with tempfile.TemporaryDirectory() as tmp:
            speech |= dict(espeak_clips(Path(tmp)))
    elif not args.no_espeak:
        print("espeak-ng or sox not found: shipped speech assets only", file=sys.stderr)
    others = correct_signals(args.seed)
    print(f"speech clips: {len(speech)}; other signals: {len(others)}")
    speech_rows = evaluate(speech, args.seed)
    other_rows = evaluate(others, args.seed)
    _print_table("speech (detection: right verdict within 8000 bytes)", speech_rows)
    # Tones, noise and silence: a fault verdict on correct μ-law is a false alarm; silence and
    # ok are both right for the silent signals.
    _print_table("tones, DTMF, sweeps, noise, silence", other_rows)
    false_alarms = sum(
        n
        for rows in (speech_rows, other_rows)
        for k, n in rows["correct μ-law"].kinds.items()
        if k in FAULT_KINDS
    )
    print(f"\nfalse alarms on correct μ-law: {false_alarms}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
