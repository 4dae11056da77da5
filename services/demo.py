"""``make demo``: one simulated phone call through a real Switchboard stack, no accounts needed.

Starts Redis (or uses the one on REDIS_URL), the realtime simulator in conversation mode, one
edge and one realtime worker as real processes, then places a call with the call simulator:
the caller says a sentence, the simulated model answers with speech. Prints the per-call log
lines, writes what the caller heard to a WAV file, checks it bit-exact against what the model
sent, stops everything and exits 0 — or non-zero with the reason.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import time
from pathlib import Path

# The realtime simulator this starts checks events with openai's types (the sim extra):
# without it, fail here rather than halfway through.
import openai  # noqa: F401

from services.call_sim import CallConfig, CallReport, place_call
from services.devstack import DEMO_AUTH_TOKEN, PUBLIC_URL, Stack, StackConfig, provide_redis
from services.realtime_sim.record import read_records
from shared.audio import FRAME_BYTES, SILENCE_BYTE, write_ulaw_wav

CALLER_AUDIO = Path(__file__).parent / "call_sim" / "assets" / "caller.ulaw"
#: Lines worth showing from the services' logs: what an operator reads about one call.
SHOWN = ("incoming call", "claimed", "caller said", "AI said", "audio sent", "ended")


class DemoFailed(Exception):
    """The demo could not show a correct call; the message says why."""


def _say(text: str) -> None:
    print(text, flush=True)


def _sim_output(record_path: Path) -> tuple[bytes, list[str]]:
    """Audio the simulated model sent (all deltas, in order) and its transcripts."""
    if not record_path.exists():
        raise DemoFailed(f"the realtime simulator wrote no session record at {record_path}")
    sessions = read_records(record_path)
    if len(sessions) != 1:
        raise DemoFailed(f"expected one realtime session, the simulator saw {len(sessions)}")
    session = sessions[0]
    return base64.b64decode(session["audio_out_b64"]), list(session["transcripts"])


def check_bit_exact(model_audio: bytes, received: bytes) -> None:
    """The caller must receive exactly the model's bytes, then μ-law silence up to a frame."""
    if not model_audio:
        raise DemoFailed("the simulated model sent no audio")
    head, tail = received[: len(model_audio)], received[len(model_audio) :]
    if head != model_audio:
        first = next(i for i, (a, b) in enumerate(zip(head, model_audio, strict=False)) if a != b)
        raise DemoFailed(f"audio differs from what the model sent, first at byte {first}")
    if len(tail) >= FRAME_BYTES or any(b != SILENCE_BYTE for b in tail):
        raise DemoFailed(f"{len(tail)} unexpected bytes after the model's audio")


def _log_lines(stack: Stack, call_sid: str) -> list[str]:
    lines = []
    for process in stack.processes():
        for line in process.log().splitlines():
            if f"call={call_sid}" in line and any(word in line for word in SHOWN):
                lines.append(f"[{process.name}] {line}")
    # Log lines start with an ISO timestamp: sort the services' lines into one story.
    return sorted(lines, key=lambda line: line.split("] ", 1)[1][:24])


def _wait_for_log(stack: Stack, call_sid: str, words: tuple[str, ...], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = "\n".join(line for line in _log_lines(stack, call_sid))
        if all(word in text for word in words):
            return
        time.sleep(0.1)


def run_demo(out_dir: Path, redis_url: str) -> None:
    """Run the whole demo; raise DemoFailed (or any startup error) if something is wrong."""
    redis = provide_redis(redis_url)
    if redis.kind == "existing":
        _say(f"redis: using the server at {redis.url}")
    elif redis.kind == "redis-server":
        _say(f"redis: none answered on {redis_url}; started redis-server at {redis.url}")
    else:
        _say(
            "redis: none answered and redis-server is not installed; using an embedded "
            f"fakeredis server at {redis.url} (fine for a demo, not for production)"
        )
    stack = Stack(StackConfig(redis_url=redis.url, log_dir=out_dir / "logs"))
    try:
        stack.start()
        _say(
            f"started the realtime simulator ({stack.sim_url}), edge (Twilio's routes on "
            f"{stack.edge_urls[0]}, /metrics and /readyz on {stack.edge_admin_urls[0]}) and one "
            "realtime worker"
        )
        caller_audio = CALLER_AUDIO.read_bytes()
        _say(f"placing a call: the caller speaks for {len(caller_audio) / 8000:.1f} s ...")
        report: CallReport = asyncio.run(
            place_call(
                CallConfig(
                    edge_urls=stack.edge_urls,
                    public_url=PUBLIC_URL,
                    auth_token=DEMO_AUTH_TOKEN,
                    caller_audio=caller_audio,
                    hold_s=11.0,
                )
            )
        )
        _wait_for_log(stack, report.call_sid, ("AI said", "audio sent to Twilio"), 10)
        _say("")
        for line in _log_lines(stack, report.call_sid):
            _say(line)
        _say("")
        if report.problems():
            raise DemoFailed("; ".join(report.problems()))
        wav = out_dir / "caller-heard.wav"
        write_ulaw_wav(wav, report.heard_audio)
        _say(f"the caller heard {len(report.heard_audio) / 8000:.2f} s of audio: {wav}")
        model_audio, transcripts = _sim_output(stack.sim_record)
        check_bit_exact(model_audio, report.received_audio)
        _say(
            f"bit-exact: the caller received the model's {len(model_audio)} bytes unchanged "
            f"(+{len(report.received_audio) - len(model_audio)} bytes of μ-law silence to "
            "complete the last 20 ms frame)"
        )
        if transcripts:
            _say(f"the model said: {transcripts[0]}")
    finally:
        codes = stack.stop()
        redis.close()
    failed = {name: code for name, code in codes.items() if code != 0}
    if failed:
        raise DemoFailed(f"processes exited with errors: {failed}; logs in {out_dir / 'logs'}")
    _say("stopped the edge, worker and simulator cleanly")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.demo", description=__doc__)
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="Redis to use if one answers there (default: $REDIS_URL or local 6379)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("demo-output"), help="folder for the WAV and logs"
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for old_log in (args.out / "logs").glob("*"):
        old_log.unlink()
    try:
        run_demo(args.out, args.redis_url)
    except (DemoFailed, TimeoutError, RuntimeError, OSError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    _say("demo ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
