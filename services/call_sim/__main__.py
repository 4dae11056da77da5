"""``python -m services.call_sim``: place simulated Twilio calls against a running edge."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from services.call_sim.callee import CALLEES
from services.call_sim.placing import place_calls
from services.call_sim.report import ASSET_AUDIO, CallConfig, CallReport
from services.call_sim.signing import HMAC_SHA256, SIGNATURE_ALGORITHMS, new_shared_key_id
from services.call_sim.stream_end import ABRUPT_DROP_MODES
from shared.audio import read_wav_as_ulaw, write_ulaw_wav


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m services.call_sim",
        description="Play Twilio's side of phone calls against a running Switchboard edge: "
        "signed webhook, TwiML, Media Streams socket with real-time μ-law, marks and clear. "
        "Exits 1 if a call fails or the edge breaks Twilio's protocol.",
    )
    parser.add_argument(
        "--edge",
        action="append",
        metavar="URL",
        help="an edge's real address (repeatable; later ones take over when one refuses "
        "connections); default http://127.0.0.1:8080",
    )
    parser.add_argument(
        "--public-url",
        default=os.environ.get("PUBLIC_URL", "https://edge.switchboard.example"),
        help="the URL the edge believes Twilio reaches it at; requests are signed for it "
        "(default: $PUBLIC_URL or https://edge.switchboard.example)",
    )
    parser.add_argument(
        "--auth-token",
        default=os.environ.get("TWILIO_AUTH_TOKEN"),
        help="Twilio auth token that signs the requests (default: $TWILIO_AUTH_TOKEN)",
    )
    parser.add_argument(
        "--shared-key",
        default=os.environ.get("TWILIO_WEBHOOK_SHARED_KEY"),
        metavar="SECRET",
        help="sign with this Twilio SharedKey secret instead, as when a Webhook Rule matches: "
        "every request carries X-Twilio-Webhooks-Signature-Settings (default: "
        "$TWILIO_WEBHOOK_SHARED_KEY)",
    )
    parser.add_argument(
        "--shared-key-id",
        default=None,
        metavar="ID",
        help="the SharedKey id named in that header (default: a random webhooks_sharedkey_…)",
    )
    parser.add_argument(
        "--signature-algorithm",
        type=str.upper,
        choices=SIGNATURE_ALGORITHMS,
        default=HMAC_SHA256,
        help=f"the algorithm a shared key signs with (default {HMAC_SHA256})",
    )
    parser.add_argument(
        "--abrupt-drop",
        choices=ABRUPT_DROP_MODES,
        default="end",
        help="when the edge drops a stream without a close frame (Twilio error 31903): end the "
        "call (default; Twilio documents no continuation) or continue with the next verb, "
        "e.g. the <Redirect>, as after a clean close",
    )
    parser.add_argument(
        "--audio",
        type=Path,
        default=ASSET_AUDIO,
        metavar="FILE",
        help="what the caller says: raw μ-law 8 kHz (.ulaw) or 16-bit mono 8 kHz WAV "
        "(default: the bundled caller.ulaw)",
    )
    parser.add_argument(
        "--hold",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="silence sent after the audio while listening to the reply (default 5)",
    )
    parser.add_argument(
        "--reconnect-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="time Twilio takes from a stream's end to the next verb (default 0); what the "
        "caller says meanwhile is lost",
    )
    parser.add_argument(
        "--callee",
        choices=CALLEES,
        default="answer",
        help="the person a <Dial> rings: answers (default), lets it ring out (no-answer), is "
        "busy, or cannot be reached (failed)",
    )
    parser.add_argument(
        "--callee-ring-s",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how long their phone rings before they answer or it is given up (default 1; "
        "never longer than the <Dial timeout>)",
    )
    parser.add_argument(
        "--callee-talk-s",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how long they stay on once connected before hanging up (default 1)",
    )
    parser.add_argument("--calls", type=int, default=1, metavar="N", help="concurrent calls")
    parser.add_argument(
        "--wav-out",
        type=Path,
        metavar="PATH",
        help="write what the caller heard as WAV (call i > 1 gets a -i suffix)",
    )
    parser.add_argument("--json", action="store_true", help="print the reports as JSON")
    parser.add_argument("--timeout", type=float, metavar="SECONDS", help="per-call limit")
    return parser


def _read_audio(path: Path) -> bytes:
    if path.suffix.lower() == ".wav":
        return read_wav_as_ulaw(path)
    return path.read_bytes()


def _wav_path(base: Path, index: int) -> Path:
    return base if index == 0 else base.with_name(f"{base.stem}-{index + 1}{base.suffix}")


def _summary(report: CallReport) -> str:
    lines = [
        f"call {report.call_sid}: {'ok' if report.ok else 'FAILED'}",
        f"  streams {len(report.stream_sids)}, closed by {report.closed_by} "
        f"(code {report.close_code}), redirects {len(report.redirects)}",
        f"  sent {len(report.sent_audio) / 8000:.2f} s, received "
        f"{len(report.received_audio) / 8000:.2f} s, heard {len(report.heard_audio) / 8000:.2f} s",
        f"  caller audio lost while reconnecting {report.caller_audio_lost_ms:.0f} ms, longest "
        f"gap in the edge's audio {report.longest_media_gap_ms():.0f} ms"
        + (f", Twilio errors {report.twilio_errors}" if report.twilio_errors else ""),
        f"  marks {len(report.marks_received)} received / {len(report.marks_echoed)} echoed, "
        f"clears {report.clears}, first audio after "
        + (
            f"{report.timings.first_audio_ms:.0f} ms"
            if report.timings.first_audio_ms is not None
            else "never"
        ),
    ]
    lines += [
        f"  dial {dial.noun} {dial.address} ({dial.callee}): {dial.dial_call_status}"
        + (f", whisper {dial.whisper}" if dial.whisper_url else "")
        + (f", action answered {dial.action_answer}" if dial.action else ", no action")
        for dial in report.dials
    ]
    lines += [f"  ! {problem}" for problem in report.problems()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.auth_token and not args.shared_key:
        print(
            "call_sim: nothing to sign with: pass --auth-token (or set TWILIO_AUTH_TOKEN) or "
            "--shared-key (or set TWILIO_WEBHOOK_SHARED_KEY)",
            file=sys.stderr,
        )
        return 2
    if args.calls < 1:
        print("call_sim: --calls must be at least 1", file=sys.stderr)
        return 2
    if args.callee_ring_s < 0 or args.callee_talk_s < 0:
        print("call_sim: --callee-ring-s and --callee-talk-s must not be negative", file=sys.stderr)
        return 2
    try:
        audio = _read_audio(args.audio)
    except (OSError, ValueError) as exc:
        print(f"call_sim: cannot read --audio: {exc}", file=sys.stderr)
        return 2
    configs = [
        CallConfig(
            edge_urls=args.edge or ["http://127.0.0.1:8080"],
            public_url=args.public_url,
            auth_token=args.auth_token or "",
            caller_audio=audio,
            hold_s=args.hold,
            timeout_s=args.timeout,
            shared_key=args.shared_key or None,
            shared_key_id=args.shared_key_id or new_shared_key_id(),
            signature_algorithm=args.signature_algorithm,
            abrupt_drop=args.abrupt_drop,
            reconnect_delay_s=args.reconnect_delay,
            callee=args.callee,
            callee_ring_s=args.callee_ring_s,
            callee_talk_s=args.callee_talk_s,
        )
        for _ in range(args.calls)
    ]
    reports = asyncio.run(place_calls(configs))
    if args.wav_out is not None:
        for index, report in enumerate(reports):
            write_ulaw_wav(_wav_path(args.wav_out, index), report.heard_audio)
    if args.json:
        print(json.dumps([report.to_dict() for report in reports], indent=2))
    else:
        for report in reports:
            print(_summary(report))
    failed = [report for report in reports if not report.ok]
    if failed:
        print(
            f"call_sim: {len(failed)} of {len(reports)} call(s) failed or broke Twilio's "
            f"protocol; first: {failed[0].problems()[0]}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
