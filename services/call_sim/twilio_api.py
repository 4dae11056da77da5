"""A stand-in for Twilio's REST API: create calls as ``POST /2010-04-01/Accounts/{AccountSid}/
Calls.json`` does, and place them against an app (``outbound.py``).

Routes: create a call; fetch it (``GET …/Calls/{Sid}.json``); a recording's file (``GET
…/Recordings/{Sid}.wav``, no credentials, as Twilio serves media by default); and, for tests,
``GET /_sim/calls`` and ``GET /_sim/calls/{Sid}`` (no credentials: simulator-only) with each
call's request, callbacks, AMD verdict, final status and report. Errors are Twilio's JSON
bodies. ``serve_api(ApiConfig(...))`` runs it in-process on a free port;
``python -m services.call_sim.twilio_api --help`` from a shell, printing ``twilio api stand-in
listening on http://HOST:PORT`` once it accepts connections and exiting 0 on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import get_args
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.call_sim.api_requests import Account, ApiError, authenticate, parse_create_call
from services.call_sim.outbound import Line, OutboundCall, place_outbound
from services.call_sim.outbound_wire import CallFacts, call_resource
from services.call_sim.party import PARTY_KINDS, PartyKind, PartySettings
from services.call_sim.report import ASSET_AUDIO
from services.call_sim.routing import new_sid
from services.local_server import serving
from shared.audio import read_wav_as_ulaw
from shared.logs import setup_logging

__all__ = ["ApiConfig", "TwilioApi", "main", "serve_api"]

logger = logging.getLogger("switchboard.call_sim.twilio_api")

ACCOUNTS = "/2010-04-01/Accounts/{account}"
_SID = re.compile(r"(AC|SK|AP)[0-9a-fA-F]{32}")


@dataclass(frozen=True)
class ApiConfig:
    """The stand-in: its account (credentials, numbers), its parties, where calls go."""

    account: Account
    caller_audio: bytes | None = None  # μ-law; None: the bundled caller.ulaw
    parties: dict[str, PartyKind] = field(default_factory=dict)  # To number → who answers
    default_party: PartyKind = "human"
    party: PartySettings = field(default_factory=PartySettings)
    edge_urls: tuple[str, ...] = ()  # empty: requests go to each call's Url's host
    public_url: str | None = None
    linger_s: float = 2.0
    quiet_s: float = 0.5
    http_timeout_s: float = 10.0
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free one


def _error(exc: ApiError) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Basic realm="Twilio API"'} if exc.status == 401 else None
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


def _not_found(request: Request) -> ApiError:
    return ApiError(404, 20404, f"The requested resource {request.url.path} was not found")


class TwilioApi:
    """The stand-in's state: every call created, by sid, in order."""

    def __init__(self, config: ApiConfig, caller_audio: bytes) -> None:
        self.config = config
        self.calls: dict[str, OutboundCall] = {}
        self.url = ""  # once serving
        self._tasks: set[asyncio.Task[None]] = set()
        self._caller_audio = caller_audio

    def line(self) -> Line:
        config = self.config
        return Line(
            account=config.account,
            caller_audio=self._caller_audio,
            parties=config.parties,
            default_party=config.default_party,
            party=config.party,
            edge_urls=config.edge_urls,
            public_url=config.public_url,
            api_base_url=self.url,
            linger_s=config.linger_s,
            quiet_s=config.quiet_s,
            http_timeout_s=config.http_timeout_s,
        )

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route(f"{ACCOUNTS}/Calls.json", self._create, methods=["POST"]),
                Route(f"{ACCOUNTS}/Calls/{{sid}}.json", self._fetch, methods=["GET"]),
                Route(f"{ACCOUNTS}/Recordings/{{sid}}.wav", self._recording, methods=["GET"]),
                Route("/_sim/calls", self._sim_calls, methods=["GET"]),
                Route("/_sim/calls/{sid}", self._sim_call, methods=["GET"]),
            ],
            exception_handlers={HTTPException: self._http_error},
        )

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 404:
            return _error(_not_found(request))
        code = {405: 20004}.get(status, 20500)
        return _error(ApiError(status, code, f"{request.method} {request.url.path}: HTTP {status}"))

    def _authenticate(self, request: Request) -> str:
        account = request.path_params["account"]
        return authenticate(request.headers.get("authorization"), account, self.config.account)

    async def _create(self, request: Request) -> Response:
        try:
            auth = self._authenticate(request)
            form = parse_qsl((await request.body()).decode(), keep_blank_values=True)
            create = parse_create_call(form, self.config.account)
        except ApiError as exc:
            return _error(exc)
        now = datetime.now(UTC)
        facts = CallFacts(
            new_sid("CA"), self.config.account.sid, create.to, create.from_, "queued", now, now
        )
        party = self.config.parties.get(create.to, self.config.default_party)
        call = OutboundCall(facts, create, form, auth, party)
        self.calls[facts.sid] = call
        task = asyncio.create_task(self._place(call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        logger.info("created call %s to %s (%s)", facts.sid, create.to, party)
        return JSONResponse(call_resource(facts), status_code=201)

    async def _place(self, call: OutboundCall) -> None:
        try:
            await place_outbound(call, self.line())
        except Exception:  # a bug, not the call's fault: keep serving
            logger.exception("call %s broke the stand-in", call.facts.sid)
            call.done = True

    async def _fetch(self, request: Request) -> Response:
        try:
            self._authenticate(request)
        except ApiError as exc:
            return _error(exc)
        call = self.calls.get(request.path_params["sid"])
        if call is None:
            return _error(
                ApiError(404, 20404, f"The requested resource {request.url.path} was not found")
            )
        return JSONResponse(call_resource(call.facts))

    async def _recording(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        for call in self.calls.values():
            for recording in [] if call.report is None else call.report.recordings:
                if recording.sid == sid and recording.status == "completed":
                    return Response(recording.wav(), media_type="audio/x-wav")
        return _error(
            ApiError(404, 20404, f"The requested resource {request.url.path} was not found")
        )

    async def _sim_calls(self, request: Request) -> Response:
        return JSONResponse([call.to_dict() for call in self.calls.values()])

    async def _sim_call(self, request: Request) -> Response:
        call = self.calls.get(request.path_params["sid"])
        if call is None:
            return _error(ApiError(404, 20404, f"No call {request.path_params['sid']}"))
        return JSONResponse(call.to_dict())

    async def close(self) -> None:
        """Hang up every call still going (their reports say so)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@asynccontextmanager
async def serve_api(config: ApiConfig) -> AsyncIterator[TwilioApi]:
    """Serve the stand-in for the duration of the block; ``.url`` is where it listens."""
    if config.caller_audio is None:
        audio = await asyncio.to_thread(ASSET_AUDIO.read_bytes)
    else:
        audio = config.caller_audio
    api = TwilioApi(config, audio)
    uvicorn_config = uvicorn.Config(
        api.app(),
        host=config.host,
        port=config.port,
        log_config=None,
        access_log=False,
        lifespan="off",
        ws="none",
    )
    try:
        async with serving(uvicorn_config) as (_, url):
            api.url = url
            yield api
    finally:
        await api.close()


# --- the command line ---------------------------------------------------------------------


def _pairs(values: Sequence[str], flag: str, sep: str) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        left, found, right = value.partition(sep)
        if not found or not left or not right:
            raise ValueError(f"{flag} {value!r}: expected LEFT{sep}RIGHT")
        pairs.append((left, right))
    return pairs


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m services.call_sim.twilio_api",
        description="A stand-in for Twilio's REST API: create calls (POST /2010-04-01/Accounts/"
        "AC…/Calls.json) and place them against your app, with status callbacks, answering "
        "machine detection and recordings. GET /_sim/calls says what happened.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument(
        "--port", type=int, default=8766, help="0: a free one (default %(default)s)"
    )
    parser.add_argument("--account-sid", default=os.environ.get("TWILIO_ACCOUNT_SID"))
    parser.add_argument("--auth-token", default=os.environ.get("TWILIO_AUTH_TOKEN"))
    parser.add_argument(
        "--api-key", action="append", default=[], metavar="SK…:SECRET", help="repeatable"
    )
    parser.add_argument(
        "--number",
        action="append",
        default=[],
        metavar="+1…",
        help="a number the account owns, to call From (repeatable)",
    )
    parser.add_argument(
        "--party",
        action="append",
        default=[],
        metavar="+1…=KIND",
        help=f"who answers that number (repeatable); KIND: {', '.join(PARTY_KINDS)}",
    )
    parser.add_argument("--default-party", choices=PARTY_KINDS, default="human")
    parser.add_argument(
        "--application", action="append", default=[], metavar="AP…=URL", help="repeatable"
    )
    parser.add_argument(
        "--permit-prefix",
        action="append",
        default=[],
        metavar="+CC",
        help="geo permissions: only To numbers with these prefixes (repeatable; default: all)",
    )
    parser.add_argument(
        "--caller-audio",
        type=Path,
        metavar="FILE",
        help="what a person says and a machine greets with: μ-law (.ulaw) or 8 kHz WAV "
        "(default: the bundled caller.ulaw)",
    )
    parser.add_argument("--edge", action="append", default=[], metavar="URL")
    parser.add_argument("--public-url", default=os.environ.get("PUBLIC_URL"))
    defaults = PartySettings()
    for name, help_text in (
        ("hold_s", "silence after speaking, or all a silent party does"),
        ("ring_s", "ringing before an answer, or before no-answer"),
        ("greeting_s", "a machine's greeting"),
        ("beep_s", "its beep"),
        ("detect_s", "how long AMD takes to decide"),
    ):
        flag = "--" + name.replace("_", "-")
        default = getattr(defaults, name)
        parser.add_argument(flag, type=float, default=default, help=f"{help_text} ({default})")
    parser.add_argument("--linger-s", type=float, default=2.0)
    parser.add_argument(
        "--log-level",
        default=os.environ.get("LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
    )
    return parser


def config_from_args(args: argparse.Namespace) -> ApiConfig:
    """Raises ValueError (or OSError reading the audio) for a bad command line."""
    if not args.account_sid or not _SID.fullmatch(args.account_sid) or args.account_sid[:2] != "AC":
        raise ValueError("--account-sid (or $TWILIO_ACCOUNT_SID): AC and 32 hex digits")
    if not args.auth_token:
        raise ValueError("--auth-token (or $TWILIO_AUTH_TOKEN) is required")
    parties: dict[str, PartyKind] = {}
    for number, kind in _pairs(args.party, "--party", "="):
        if kind not in get_args(PartyKind):
            raise ValueError(f"--party {number}={kind}: KIND is one of {', '.join(PARTY_KINDS)}")
        parties[number] = kind  # type: ignore[assignment]  # checked just above
    audio = None
    if args.caller_audio is not None:
        path: Path = args.caller_audio
        audio = read_wav_as_ulaw(path) if path.suffix.lower() == ".wav" else path.read_bytes()
    account = Account(
        sid=args.account_sid,
        auth_token=args.auth_token,
        api_keys=dict(_pairs(args.api_key, "--api-key", ":")),
        numbers=frozenset(args.number),
        applications=dict(_pairs(args.application, "--application", "=")),
        permitted_prefixes=tuple(args.permit_prefix),
    )
    return ApiConfig(
        account=account,
        caller_audio=audio,
        parties=parties,
        default_party=args.default_party,
        party=PartySettings(
            ring_s=args.ring_s,
            greeting_s=args.greeting_s,
            beep_s=args.beep_s,
            detect_s=args.detect_s,
            hold_s=args.hold_s,
        ),
        edge_urls=tuple(args.edge),
        public_url=args.public_url if args.edge else None,
        linger_s=args.linger_s,
        host=args.host,
        port=args.port,
    )


async def serve_until_signalled(config: ApiConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with serve_api(config) as api:
        print(f"twilio api stand-in listening on {api.url}", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    secrets = [args.auth_token, *(secret for _, secret in _pairs(args.api_key, "", ":"))]
    setup_logging(args.log_level, secrets)
    asyncio.run(serve_until_signalled(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
