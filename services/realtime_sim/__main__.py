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
from .faults import Fault
from .reply import DEFAULT_CALLER_TRANSCRIPT, DEFAULT_REPLY_TEXT, default_reply_audio
from .server import SimulatorConfig, run_simulator
from .vad import VadSettings


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
        vad=VadSettings(threshold_dbfs=args.vad_threshold_dbfs),
        fault=Fault(args.fault),
        serves_pcm16=args.audio_format == "pcm16",
        end_call_after=args.end_call_after,
        call_tool=args.call_tool,
        tool_arguments=json.dumps(arguments),
    )
    return SimulatorConfig(
        host=args.host,
        port=args.port,
        behaviour=behaviour,
        api_key=args.api_key,
        record_path=args.record,
        hostile_every=args.hostile_every,
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
