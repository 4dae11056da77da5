"""``python -m services.bench.transcode``: what the μ-law 8 kHz ↔ PCM16 24 kHz transcoder costs.

Each libsoxr quality of ``CallTranscoder`` (``TRANSCODE_QUALITY``) is measured next to a naive
streaming linear-interpolation resampler written here (``LinearTranscoder``: 8k→24k with
``np.interp``, keeping the last sample across chunks; 24k→8k by taking every third sample,
which is linear interpolation at the output instants when the ratio is exactly 3). The figures:

* **Round trip** (μ-law): μ-law 8 kHz → ``to_model`` in 20 ms frames → PCM16 24 kHz → ``to_caller``
  in 100 ms deltas, ``finish_reply`` → μ-law 8 kHz, decoded and compared with the decoded
  original: SNR in dB at the best lag in -5..5 samples, leaving out the first and last 50 ms.
  Over speech (the worst clip) and over tones at 300 Hz, 1 kHz and 3.2 kHz (-12 dBFS, 1 s).
* **One way** (linear PCM, against an ideal band-limited reference made with numpy's FFT over
  the whole clip): *up* compares ``to_model``'s 24 kHz output with the decoded μ-law input
  upsampled by zero-padding its spectrum (speech, and the 3.2 kHz tone, whose images above
  4 kHz a linear interpolator leaves in); *down* feeds the downsampler 24 kHz audio with
  content above 4 kHz and compares its 8 kHz output with the spectrum truncated at 4 kHz. That
  audio is made, not recorded: each speech clip is upsampled ideally to 24 kHz and a band of
  noise from 5 to 10 kHz is added 20 dB below the speech's RMS, standing in for the fricatives
  a 24 kHz voice carries; an ideal downsampler removes the band, a poor one folds it into the
  telephone band. *alias* is the attenuation of a 6 kHz tone at 24 kHz (it has no place at
  8 kHz: the ideal output is silence; libsoxr dithers its int16 output by about ±1 LSB, which
  bounds this figure near 87 dB). The downsampler is driven as ``CallTranscoder`` builds
  it, but its PCM output is compared before μ-law encoding.
* **Held back**: the most audio each direction withholds at its chunk size (output expected
  from the input so far minus output emitted, after each chunk; the maximum over the stream
  and the mean), in ms.
* **CPU**: ``time.process_time`` over ``--seconds`` of caller audio in 20 ms frames and as much
  model audio in 100 ms deltas (one reply), as µs per chunk and as CPU seconds per call-minute
  (the least of three runs, each a fresh transcoder, to damp other load on the machine).

Speech is a few clips made with espeak-ng and sox (``services.doctor.tune_detector``; the
-20 dBFS clip of sentence *i* in voice *i*) and the shipped speech assets; without espeak-ng or
sox, the assets only. An SNR of 99 dB or more (a bit-exact result gives infinity) is shown as
"lossless" and written as 99.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from services.doctor.corpus import Signal, asset_speech, resample, to_ulaw
from services.realtime_worker.transcode import MODEL_RATE, QUALITIES, CallTranscoder, Resampler
from shared.audio import FRAME_BYTES, SAMPLE_RATE, silence, ulaw_to_linear

__all__ = [
    "LINEAR",
    "RESAMPLERS",
    "LinearDown",
    "LinearTranscoder",
    "LinearUp",
    "Row",
    "alias_attenuation_db",
    "down_pcm",
    "feed_up",
    "main",
    "make_transcoder",
    "measure",
    "snr_db",
    "speech_clips",
    "table",
    "up_pcm",
    "with_high_band",
]

Int16 = npt.NDArray[np.int16]

LINEAR: Final = "linear"
RESAMPLERS: Final = (*QUALITIES, LINEAR)
RATIO: Final = MODEL_RATE // SAMPLE_RATE  # 3
MODEL_DELTA_BYTES: Final = 4800  # 100 ms of PCM16 at 24 kHz
SNR_CAP_DB: Final = 99.0
EDGE_S: Final = 0.05
LAGS: Final = tuple(sorted(range(-5, 6), key=abs))  # ties go to the smallest shift
TONES_HZ: Final = (300, 1000, 3200)
TONE_S: Final = 1.0  # whole cycles of each tone: the clip is periodic, as the FFT sees it
TONE_LEVEL: Final = 10 ** (-12 / 20)
ALIAS_HZ: Final = 6000
ALIAS_LEVEL: Final = 0.5
HIGH_BAND_HZ: Final = (5000.0, 10000.0)
HIGH_BAND_DB: Final = -20.0  # RMS of the band, relative to the speech's
ESPEAK_CLIPS: Final = 4
CPU_REPEATS: Final = 3
ESPEAK_LEVEL: Final = "-20 dBFS"


def _int16(x: npt.NDArray[np.float64]) -> Int16:
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


class LinearUp:
    """8 kHz → 24 kHz by linear interpolation, streaming: each input interval gives three
    output samples once the sample that ends it has arrived, so the last input sample is kept
    for the next chunk (3 output samples, 0.125 ms, held back)."""

    def __init__(self) -> None:
        self._last: npt.NDArray[np.float64] = np.zeros(0)

    def resample_chunk(self, x: Int16, last: bool = False) -> Int16:
        points = np.concatenate([self._last, x.astype(np.float64)])
        self._last = points[-1:]
        intervals = len(points) - 1 + (1 if last and len(points) else 0)
        if intervals <= 0:
            return np.zeros(0, dtype=np.int16)
        # Past the last sample np.interp holds its value: the flushed end.
        at = np.arange(RATIO * intervals) / RATIO
        out = _int16(np.interp(at, np.arange(len(points)), points))
        if last:
            self._last = np.zeros(0)
        return out


class LinearDown:
    """24 kHz → 8 kHz by linear interpolation at the output instants, which at exactly 3:1
    fall on input samples: every third sample, counted across chunks. Holds nothing back."""

    def __init__(self) -> None:
        self._skip = 0  # index, in the next chunk, of the next sample to take

    def resample_chunk(self, x: Int16, last: bool = False) -> Int16:
        out = x[self._skip :: RATIO].copy()
        self._skip = (self._skip - len(x)) % RATIO
        return out


class LinearTranscoder(CallTranscoder):
    """``CallTranscoder`` around ``LinearUp`` and ``LinearDown`` instead of libsoxr."""

    def __init__(self) -> None:
        super().__init__(LINEAR)

    def resampler(self, in_rate: int, out_rate: int) -> Resampler:
        return LinearUp() if out_rate > in_rate else LinearDown()


def make_transcoder(name: str) -> CallTranscoder:
    """A fresh call's transcoder: ``CallTranscoder(name)`` or, for ``"linear"``, ours."""
    return LinearTranscoder() if name == LINEAR else CallTranscoder(name)


def _down_stream(name: str) -> Resampler:
    """The reply downsampler as ``CallTranscoder`` builds it, for comparing its PCM output."""
    return make_transcoder(name).resampler(MODEL_RATE, SAMPLE_RATE)


# --- figures -----------------------------------------------------------------------------------


def snr_db(
    reference: npt.ArrayLike, output: npt.ArrayLike, edge: int, lags: Iterable[int] = LAGS
) -> tuple[float, int]:
    """SNR of ``output`` against ``reference`` (dB, at most ``SNR_CAP_DB``) at the lag that
    suits it best, ``output[n + lag]`` against ``reference[n]``, leaving out ``edge`` samples at
    each end (``edge`` must be at least the largest shift)."""
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(output, dtype=np.float64)
    n = min(len(ref), len(out))
    core = ref[edge : n - edge]
    power = float(np.sum(core**2))
    best, best_lag = -math.inf, 0
    for lag in lags:
        noise = float(np.sum((core - out[edge + lag : n - edge + lag]) ** 2))
        snr = SNR_CAP_DB if noise == 0 else 10 * math.log10(max(power, 1e-300) / noise)
        if min(snr, SNR_CAP_DB) > best:
            best, best_lag = min(snr, SNR_CAP_DB), lag
    return best, best_lag


def _held_ms(held: Sequence[int], rate: int) -> tuple[float, float]:
    return (max(held) * 1000 / rate, sum(held) * 1000 / rate / len(held)) if held else (0.0, 0.0)


def _feed(
    convert: Callable[[bytes], bytes],
    data: bytes,
    step: int,
    due: Callable[[int], int],
    size: Callable[[bytes], int],
) -> tuple[list[bytes], list[int]]:
    """``convert`` over ``data`` in chunks of ``step`` bytes: its outputs, and after each chunk
    how much output it still owed (``due(bytes in so far)`` less the ``size`` given so far)."""
    outputs: list[bytes] = []
    held: list[int] = []
    got = 0
    for start in range(0, len(data), step):
        out = convert(data[start : start + step])
        outputs.append(out)
        got += size(out)
        held.append(due(min(start + step, len(data))) - got)
    return outputs, held


def feed_up(transcoder: CallTranscoder, ulaw: bytes) -> tuple[list[bytes], tuple[float, float]]:
    """``to_model`` over ``ulaw`` in 20 ms frames: the PCM it gave, and the audio it held back
    after each frame (ms, maximum and mean)."""
    chunks, held = _feed(
        transcoder.to_model, ulaw, FRAME_BYTES, lambda n: RATIO * n, lambda pcm: len(pcm) // 2
    )
    return chunks, _held_ms(held, MODEL_RATE)


def up_pcm(transcoder: CallTranscoder, ulaw: bytes) -> Int16:
    """``feed_up``, then silence until the filter has given up all of ``ulaw``: the 24 kHz
    output, 3 samples per byte."""
    want = RATIO * len(ulaw)
    chunks, _ = feed_up(transcoder, ulaw)
    got = sum(len(c) for c in chunks) // 2
    for _ in range(200):  # 4 s of silence flushes any quality with room to spare
        if got >= want:
            break
        chunks.append(transcoder.to_model(silence(FRAME_BYTES)))
        got += len(chunks[-1]) // 2
    out = np.frombuffer(b"".join(chunks), dtype="<i2")[:want].astype(np.int16)
    if len(out) < want:
        raise RuntimeError(f"the upsampler gave {len(out)} samples of {want}")
    return out


def down_ulaw(transcoder: CallTranscoder, pcm: bytes) -> tuple[bytes, tuple[float, float]]:
    """``to_caller`` over ``pcm`` in 100 ms deltas, then ``finish_reply``: the μ-law output,
    and the audio held back after each delta before the flush (ms, maximum and mean)."""
    parts, held = _feed(
        transcoder.to_caller, pcm, MODEL_DELTA_BYTES, lambda n: n // (2 * RATIO), len
    )
    parts.append(transcoder.finish_reply())
    return b"".join(parts), _held_ms(held, SAMPLE_RATE)


def down_pcm(name: str, pcm: Int16) -> Int16:
    """The downsampler alone, in 100 ms deltas and flushed: its 8 kHz PCM output."""
    stream = _down_stream(name)
    step = MODEL_DELTA_BYTES // 2
    parts = [stream.resample_chunk(pcm[i : i + step]) for i in range(0, len(pcm), step)]
    parts.append(stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True))
    return np.concatenate(parts).astype(np.int16)


def round_trip_db(name: str, signal: Signal) -> tuple[float, int]:
    """μ-law → 24 kHz → μ-law through one call's transcoder: SNR (dB) and lag, 8 kHz."""
    ulaw = to_ulaw(signal)
    transcoder = make_transcoder(name)
    pcm = up_pcm(transcoder, ulaw)
    back, _ = down_ulaw(transcoder, pcm.astype("<i2").tobytes())
    return snr_db(ulaw_to_linear(ulaw), ulaw_to_linear(back), int(EDGE_S * SAMPLE_RATE))


def up_db(name: str, signal: Signal) -> tuple[float, int]:
    """``to_model``'s 24 kHz output against the decoded input upsampled ideally."""
    ulaw = to_ulaw(signal)
    decoded = ulaw_to_linear(ulaw).astype(np.float64)
    out = up_pcm(make_transcoder(name), ulaw)
    ideal = resample(decoded, SAMPLE_RATE, MODEL_RATE)
    return snr_db(ideal, out, int(EDGE_S * MODEL_RATE))


def with_high_band(signal: Signal, seed: int = 0) -> Int16:
    """An 8 kHz clip upsampled ideally to 24 kHz, plus noise from 5 to 10 kHz at
    ``HIGH_BAND_DB`` below its RMS, as PCM16."""
    wide = resample(signal, SAMPLE_RATE, MODEL_RATE)
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(len(wide)))
    hz = np.fft.rfftfreq(len(wide), 1 / MODEL_RATE)
    spectrum[(hz < HIGH_BAND_HZ[0]) | (hz > HIGH_BAND_HZ[1])] = 0
    band = np.fft.irfft(spectrum, len(wide))
    rms = float(np.sqrt(np.mean(wide**2)))
    band *= rms * 10 ** (HIGH_BAND_DB / 20) / (float(np.sqrt(np.mean(band**2))) or 1.0)
    return _int16(np.clip(wide + band, -1, 1) * 32767)


def down_db(name: str, pcm: Int16) -> tuple[float, int]:
    """The downsampler's 8 kHz PCM output against the input's spectrum truncated at 4 kHz."""
    ideal = resample(pcm.astype(np.float64), MODEL_RATE, SAMPLE_RATE)
    return snr_db(ideal, down_pcm(name, pcm), int(EDGE_S * SAMPLE_RATE))


def alias_attenuation_db(name: str, seconds: float = TONE_S) -> float:
    """How far below its input a 6 kHz tone at 24 kHz comes out at 8 kHz (dB, at most
    ``SNR_CAP_DB``); the ideal output is silence."""
    t = np.arange(int(seconds * MODEL_RATE)) / MODEL_RATE
    tone = _int16(ALIAS_LEVEL * 32767 * np.sin(2 * np.pi * ALIAS_HZ * t))
    edge = int(EDGE_S * SAMPLE_RATE)
    out = down_pcm(name, tone)[edge:-edge].astype(np.float64)
    power_in = float(np.mean(tone.astype(np.float64) ** 2))
    power_out = float(np.mean(out**2))
    return SNR_CAP_DB if power_out == 0 else min(10 * math.log10(power_in / power_out), SNR_CAP_DB)


@dataclass(frozen=True)
class Cost:
    held_up_ms: float
    held_up_mean_ms: float
    held_down_ms: float
    held_down_mean_ms: float
    up_us_per_chunk: float
    down_us_per_delta: float
    cpu_s_per_call_min: float


def cost(name: str, caller: bytes, model: bytes) -> Cost:
    """CPU and hold-back of one call's transcoder over ``caller`` (μ-law, 20 ms frames) and
    ``model`` (PCM16 24 kHz, 100 ms deltas, one reply); the CPU time of each direction is the
    least of ``CPU_REPEATS`` calls, each with a fresh transcoder."""
    make_transcoder(name).to_model(silence(FRAME_BYTES))  # warm up: codec tables, soxr setup
    up_s = down_s = math.inf
    for _ in range(CPU_REPEATS):
        transcoder = make_transcoder(name)
        started = time.process_time()
        _, held_up = feed_up(transcoder, caller)
        up_s = min(up_s, time.process_time() - started)
        started = time.process_time()
        _, held_down = down_ulaw(transcoder, model)
        down_s = min(down_s, time.process_time() - started)
    seconds = len(caller) / SAMPLE_RATE
    frames = math.ceil(len(caller) / FRAME_BYTES)
    deltas = math.ceil(len(model) / MODEL_DELTA_BYTES)
    return Cost(
        held_up_ms=held_up[0],
        held_up_mean_ms=held_up[1],
        held_down_ms=held_down[0],
        held_down_mean_ms=held_down[1],
        up_us_per_chunk=up_s / frames * 1e6,
        down_us_per_delta=down_s / deltas * 1e6,
        cpu_s_per_call_min=(up_s + down_s) * 60 / seconds,
    )


@dataclass(frozen=True)
class Row:
    """One resampler's figures (dB: higher is better; SNRs capped at ``SNR_CAP_DB``)."""

    resampler: str
    round_trip_speech_db: float  # the worst clip
    round_trip_tone_db: dict[str, float]
    round_trip_lags: list[int]  # the best lags met, over every clip and tone
    up_speech_db: float  # the worst clip
    up_tone_db: float  # the highest tone
    up_lags: list[int]
    down_speech_db: float  # the worst clip, with the 5–10 kHz band
    down_lags: list[int]
    alias_db: float  # attenuation of a 6 kHz tone
    held_up_ms: float  # the maximum over the stream
    held_up_mean_ms: float
    held_down_ms: float
    held_down_mean_ms: float
    up_us_per_chunk: float
    down_us_per_delta: float
    cpu_s_per_call_min: float
    clips: dict[str, dict[str, float]] = field(default_factory=dict)

    def numbers(self) -> list[float]:
        """Every figure, for checks."""
        return [
            self.round_trip_speech_db,
            *self.round_trip_tone_db.values(),
            self.up_speech_db,
            self.up_tone_db,
            self.down_speech_db,
            self.alias_db,
            self.held_up_ms,
            self.held_up_mean_ms,
            self.held_down_ms,
            self.held_down_mean_ms,
            self.up_us_per_chunk,
            self.down_us_per_delta,
            self.cpu_s_per_call_min,
        ]


def tones() -> dict[str, Signal]:
    t = np.arange(int(TONE_S * SAMPLE_RATE)) / SAMPLE_RATE
    return {f"{hz} Hz": TONE_LEVEL * np.sin(2 * np.pi * hz * t) for hz in TONES_HZ}


def _tile(chunks: Sequence[npt.NDArray[Any]], n: int) -> npt.NDArray[Any]:
    joined = np.concatenate(chunks)
    return np.resize(joined, n)  # repeats it as often as needed


def measure(speech: Mapping[str, Signal], seconds: float = 60.0) -> list[Row]:
    """Every figure for every resampler in ``RESAMPLERS``, over ``speech`` (8 kHz clips) and
    the tones; the CPU figures over ``seconds`` of audio each way."""
    if not speech:
        raise ValueError("no speech clips")
    wide = {name: with_high_band(clip, seed) for seed, (name, clip) in enumerate(speech.items())}
    caller = to_ulaw(_tile(list(speech.values()), int(seconds * SAMPLE_RATE)))
    model = _tile(list(wide.values()), int(seconds * MODEL_RATE)).astype("<i2").tobytes()
    tone_signals = tones()
    top_tone = f"{max(TONES_HZ)} Hz"
    rows: list[Row] = []
    for name in RESAMPLERS:
        clips: dict[str, dict[str, float]] = {}
        lags: dict[str, set[int]] = {"round trip": set(), "up": set(), "down": set()}
        for clip, signal in speech.items():
            figures = {
                "round trip": round_trip_db(name, signal),
                "up": up_db(name, signal),
                "down": down_db(name, wide[clip]),
            }
            clips[clip] = {k: v[0] for k, v in figures.items()}
            for k, (_, lag) in figures.items():
                lags[k].add(lag)
        tone_rt: dict[str, float] = {}
        for tone, signal in tone_signals.items():
            snr, lag = round_trip_db(name, signal)
            tone_rt[tone] = snr
            lags["round trip"].add(lag)
        up_tone, lag = up_db(name, tone_signals[top_tone])
        lags["up"].add(lag)
        spent = cost(name, caller, model)
        rows.append(
            Row(
                resampler=name,
                round_trip_speech_db=min(c["round trip"] for c in clips.values()),
                round_trip_tone_db=tone_rt,
                round_trip_lags=sorted(lags["round trip"]),
                up_speech_db=min(c["up"] for c in clips.values()),
                up_tone_db=up_tone,
                up_lags=sorted(lags["up"]),
                down_speech_db=min(c["down"] for c in clips.values()),
                down_lags=sorted(lags["down"]),
                alias_db=alias_attenuation_db(name),
                clips=clips,
                **asdict(spent),
            )
        )
    return rows


# --- output ------------------------------------------------------------------------------------


def _db(value: float) -> str:
    return "lossless" if value >= SNR_CAP_DB else f"{value:.1f}"


def _lags(lags: Sequence[int]) -> str:
    return ",".join(str(lag) for lag in lags)


def _top_tone() -> str:
    return f"{max(TONES_HZ) / 1000:g}k"


def table(rows: Sequence[Row]) -> str:
    """The figures as two fixed-width tables: quality, then cost."""
    tone_names = list(rows[0].round_trip_tone_db) if rows else []
    quality_head = (
        ["resampler", "RT speech"]
        + [f"RT {t}" for t in tone_names]
        + ["RT lag", "up speech", f"up {_top_tone()}", "down+HF", "alias 6k"]
    )
    quality = [
        [r.resampler, _db(r.round_trip_speech_db)]
        + [_db(r.round_trip_tone_db[t]) for t in tone_names]
        + [
            _lags(r.round_trip_lags),
            _db(r.up_speech_db),
            _db(r.up_tone_db),
            _db(r.down_speech_db),
            _db(r.alias_db),
        ]
        for r in rows
    ]
    cost_head = [
        "resampler",
        "held up ms max/mean",
        "held down ms max/mean",
        "µs/20ms up",
        "µs/100ms down",
        "CPU s/call-min",
    ]
    costs = [
        [
            r.resampler,
            f"{r.held_up_ms:.1f} / {r.held_up_mean_ms:.1f}",
            f"{r.held_down_ms:.1f} / {r.held_down_mean_ms:.1f}",
            f"{r.up_us_per_chunk:.1f}",
            f"{r.down_us_per_delta:.1f}",
            f"{r.cpu_s_per_call_min:.4f}",
        ]
        for r in rows
    ]
    return (
        "quality, dB (SNR; alias: attenuation; RT = round trip μ-law→24k→μ-law; "
        "up/down vs ideal, PCM)\n"
        + _grid(quality_head, quality)
        + "\n\ncost (held: most audio withheld mid-stream; CPU: process time)\n"
        + _grid(cost_head, costs)
    )


def _grid(head: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(line[i])) for line in [head, *body]) for i in range(len(head))]

    def fmt(line: Sequence[str]) -> str:
        first = f"{line[0]:<{widths[0]}}"
        rest = "  ".join(f"{cell:>{w}}" for cell, w in zip(line[1:], widths[1:], strict=True))
        return f"{first}  {rest}"

    return "\n".join([fmt(head), *(fmt(line) for line in body)])


def speech_clips(count: int = ESPEAK_CLIPS) -> dict[str, Signal]:
    """The speech material: ``count`` espeak-ng clips (when espeak-ng and sox are installed)
    and the shipped assets."""
    clips: dict[str, Signal] = {}
    if count and shutil.which("espeak-ng") and shutil.which("sox"):
        from services.doctor.tune_detector import SENTENCES, VOICES, espeak_clips

        wanted = {
            f"espeak {VOICES[i]} #{i} {ESPEAK_LEVEL}"
            for i in range(min(count, len(VOICES), len(SENTENCES)))
        }
        with tempfile.TemporaryDirectory() as workdir:
            for name, signal in espeak_clips(Path(workdir)):
                if name in wanted:
                    clips[name] = signal
                    if len(clips) == len(wanted):
                        break
    return clips | asset_speech()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m services.bench.transcode",
        description=(
            "Measure the μ-law 8 kHz ↔ PCM16 24 kHz transcoder at each libsoxr quality and a "
            "naive linear resampler: round-trip and one-way SNR, aliasing, audio held back "
            "and CPU. Prints a table; --json writes the figures."
        ),
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=60.0,
        help="audio per direction for the CPU figures (default 60: one call-minute)",
    )
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument(
        "--clips", type=int, default=ESPEAK_CLIPS, help="espeak-ng clips (default 4; 0: none)"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.seconds <= 0:
        print("--seconds must be positive", file=sys.stderr)
        return 2
    started = time.monotonic()
    speech = speech_clips(args.clips)
    rows = measure(speech, args.seconds)
    print(f"speech: {len(speech)} clips ({', '.join(speech)}); tones {TONES_HZ} Hz")
    print(table(rows))
    print(f"\n{time.monotonic() - started:.1f} s")
    if args.json:
        from services.bench.report import machine

        command = "python -m services.bench.transcode " + shlex.join(
            sys.argv[1:] if argv is None else argv
        )
        document = {
            "command": command,
            "machine": machine(),
            "seconds": args.seconds,
            "speech": list(speech),
            "tones_hz": list(TONES_HZ),
            "snr_cap_db": SNR_CAP_DB,
            "rows": [asdict(r) for r in rows],
        }
        args.json.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
