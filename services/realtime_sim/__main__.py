"""``python -m services.realtime_sim``: a local stand-in for the OpenAI Realtime API (GA).

Prints one line, ``realtime simulator listening on ws://HOST:PORT/v1/realtime``, once it
accepts connections, and exits 0 on SIGTERM or SIGINT after closing open sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from shared.logs import setup_logging

from .behaviour import BehaviourConfig, Mode
from .failures import DropHow, Failures
from .faults import Fault
from .reply import DEFAULT_CALLER_TRANSCRIPT, DEFAULT_REPLY_TEXT, default_reply_audio
from .server import SimulatorConfig, run_simulator
from .vad import VadSettings
from .values import AllowList


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m services.realtime_sim",
        description="A local OpenAI Realtime (GA) server for tests and demos: G.711 μ-law only.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument(
        "--port",
        type=int,
        default=8765,
        help="port to bind; 0 picks a free one (default %(default)s)",
    )
    parser.add_argument(
        "--mode",
        choices=[m.value for m in Mode],
        default=Mode.CONVERSATION.value,
        help="echo: return each appended chunk at once; conversation: VAD turns answered with "
        "a canned reply (default %(default)s)",
    )
    parser.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on the handshake")
    parser.add_argument(
        "--record", type=Path, metavar="FILE", help="append one JSON line per session"
    )
    parser.add_argument(
        "--hostile-every",
        type=int,
        default=0,
        metavar="N",
        help="every Nth session sends garbage, an unknown event, an error, a huge delta, then "
        "closes mid-response (0: never; default %(default)s)",
    )
    parser.add_argument(
        "--reply-audio",
        type=Path,
        metavar="FILE",
        help="raw μ-law 8 kHz reply (default: bundled clip)",
    )
    parser.add_argument("--reply-text", default=DEFAULT_REPLY_TEXT, help="transcript of the reply")
    parser.add_argument(
        "--caller-transcript",
        default=DEFAULT_CALLER_TRANSCRIPT,
        help="input transcription reported for every caller turn, when transcription is on",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=4.0,
        help="reply pacing in multiples of real time (default %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed for delta sizes (default %(default)s)"
    )
    parser.add_argument(
        "--min-delta-bytes",
        type=int,
        default=BehaviourConfig().min_delta_bytes,
        metavar="N",
        help="smallest reply delta, μ-law bytes (8 per ms; default %(default)s)",
    )
    parser.add_argument(
        "--max-delta-bytes",
        type=int,
        default=BehaviourConfig().max_delta_bytes,
        metavar="N",
        help="largest reply delta, μ-law bytes (default %(default)s)",
    )
    parser.add_argument(
        "--probe",
        type=Path,
        metavar="FILE",
        help="for the load bench: time stamped caller frames, stamp reply audio, and append "
        "one JSON line of figures per session (services/realtime_sim/probe.py)",
    )
    parser.add_argument(
        "--vad-threshold-dbfs",
        type=float,
        default=VadSettings().threshold_dbfs,
        help="frame level counted as speech (default %(default)s)",
    )
    parser.add_argument(
        "--end-call-after",
        type=int,
        default=0,
        metavar="N",
        help="from the Nth caller turn on, call the session's end_call tool instead of "
        "replying (0: never; default %(default)s)",
    )
    parser.add_argument(
        "--call-tool",
        metavar="NAME",
        help="at the first caller turn, call the session's function tool NAME (if declared) "
        "before replying; the reply follows the function's output",
    )
    parser.add_argument(
        "--tool-arguments",
        default="{}",
        metavar="JSON",
        help="the arguments of --call-tool, a JSON object (default %(default)s)",
    )
    parser.add_argument(
        "--fault",
        choices=[f.value for f in Fault],
        default=Fault.NONE.value,
        help="misbehave on purpose: pcm16 (answer in PCM16 24 kHz, confirm audio/pcm), "
        "double-base64 (deltas base64-encoded twice), ignore-session-update (keep the default "
        "audio/pcm session) (default %(default)s)",
    )
    parser.add_argument(
        "--audio-format",
        choices=["pcmu", "pcm16"],
        default="pcmu",
        help="the audio this server speaks: pcmu (G.711 μ-law, as the OpenAI Realtime API) or "
        "pcm16 (PCM16 24 kHz only, as some Realtime-compatible backends: run the worker with "
        "REALTIME_AUDIO_FORMAT=pcm16) (default %(default)s)",
    )
    failures = parser.add_argument_group(
        "failures", "what real sessions do on a bad day: off by default, but for the 60-minute cap"
    )
    failures.add_argument(
        "--drop-after-ms",
        type=int,
        metavar="N",
        help="drop the socket once the session has accepted N ms of caller audio",
    )
    failures.add_argument(
        "--drop-how",
        choices=[h.value for h in DropHow],
        default=DropHow.ABRUPT.value,
        help="abrupt: abort the TCP connection, no close frame; 1011 or 1001: a close frame "
        "with that code; server-error: an error of type server_error, then close 1011 "
        "(default %(default)s)",
    )
    failures.add_argument(
        "--drop-sessions",
        type=int,
        default=1,
        metavar="K",
        help="only the first K sessions served drop; 0: every session (default %(default)s)",
    )
    failures.add_argument(
        "--session-max-s",
        type=float,
        default=Failures().session_max_s,
        metavar="S",
        help="close a session S seconds after it opened, with 1001 and the reason the real "
        "server gives at its cap (default %(default)s)",
    )
    failures.add_argument(
        "--server-error-after-ms",
        type=int,
        metavar="N",
        help="send one error of type server_error after N ms of caller audio; the session "
        "stays open",
    )
    failures.add_argument(
        "--fail-responses",
        type=int,
        default=0,
        metavar="N",
        help="every Nth response ends at once with response.done status failed "
        "(0: none; default %(default)s)",
    )
    failures.add_argument(
        "--transcription-fails",
        action="store_true",
        help="input transcription reports ...input_audio_transcription.failed",
    )
    failures.add_argument(
        "--rate-limits",
        action="store_true",
        help="send rate_limits.updated right after each response.created",
    )
    parser.add_argument(
        "--late-transcripts",
        action="store_true",
        help="send a caller turn's input transcript after the response.done of the reply to "
        "it, as the real server may",
    )
    parser.add_argument(
        "--cancel-delay-ms",
        type=int,
        default=BehaviourConfig().cancel_delay_ms,
        metavar="MS",
        help="response.cancel's response.done comes this much later; the response is active "
        "until then (default %(default)s)",
    )
    parser.add_argument(
        "--allow-model",
        action="append",
        default=[],
        metavar="NAME",
        help="accept this realtime model besides those the installed openai package lists "
        "(repeatable)",
    )
    parser.add_argument("--any-model", action="store_true", help="accept any realtime model name")
    parser.add_argument(
        "--allow-transcription-model",
        action="append",
        default=[],
        metavar="NAME",
        help="accept this transcription model besides those the openai package lists (repeatable)",
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="default: $LOG_LEVEL or INFO",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    if args.speed <= 0:
        raise ValueError("--speed must be positive")
    if args.end_call_after < 0:
        raise ValueError("--end-call-after must be 0 or more")
    for flag in ("drop_after_ms", "server_error_after_ms"):
        if getattr(args, flag) is not None and getattr(args, flag) < 0:
            raise ValueError(f"--{flag.replace('_', '-')} must be 0 or more")
    for flag in ("drop_sessions", "fail_responses", "cancel_delay_ms"):
        if getattr(args, flag) < 0:
            raise ValueError(f"--{flag.replace('_', '-')} must be 0 or more")
    if args.session_max_s <= 0:
        raise ValueError("--session-max-s must be positive")
    if not 1 <= args.min_delta_bytes <= args.max_delta_bytes:
        raise ValueError("--min-delta-bytes must be at least 1 and at most --max-delta-bytes")
    try:
        arguments = json.loads(args.tool_arguments)
    except ValueError:
        arguments = None
    if not isinstance(arguments, dict):
        raise ValueError("--tool-arguments must be a JSON object")
    behaviour = BehaviourConfig(
        mode=Mode(args.mode),
        reply_audio=args.reply_audio.read_bytes() if args.reply_audio else default_reply_audio(),
        reply_text=args.reply_text,
        caller_transcript=args.caller_transcript,
        speed=args.speed,
        seed=args.seed,
        min_delta_bytes=args.min_delta_bytes,
        max_delta_bytes=args.max_delta_bytes,
        vad=VadSettings(threshold_dbfs=args.vad_threshold_dbfs),
        fault=Fault(args.fault),
        serves_pcm16=args.audio_format == "pcm16",
        end_call_after=args.end_call_after,
        call_tool=args.call_tool,
        tool_arguments=json.dumps(arguments),
        failures=Failures(
            drop_after_ms=args.drop_after_ms,
            drop_how=DropHow(args.drop_how),
            drop_sessions=args.drop_sessions,
            session_max_s=args.session_max_s,
            server_error_after_ms=args.server_error_after_ms,
            fail_responses=args.fail_responses,
            transcription_fails=args.transcription_fails,
            rate_limits=args.rate_limits,
        ),
        late_transcripts=args.late_transcripts,
        cancel_delay_ms=args.cancel_delay_ms,
        allow=AllowList(
            models=frozenset(args.allow_model),
            any_model=args.any_model,
            transcription_models=frozenset(args.allow_transcription_model),
        ),
    )
    return SimulatorConfig(
        host=args.host,
        port=args.port,
        behaviour=behaviour,
        api_key=args.api_key,
        record_path=args.record,
        hostile_every=args.hostile_every,
        probe_path=args.probe,
    )


async def serve_until_signalled(config: SimulatorConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with run_simulator(config) as sim:
        print(f"realtime simulator listening on {sim.url}", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    setup_logging(args.log_level, [args.api_key])
    asyncio.run(serve_until_signalled(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
