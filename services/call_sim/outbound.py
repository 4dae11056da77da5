"""A call the REST API created, placed as Twilio places it: ring the scripted party of its ``To``
number (``party.py``), send the status callbacks it asked for, answer (or not), run answering
machine detection, then run its TwiML exactly as an inbound call's (``call.py``).

Timeline: ``initiated``; ``ringing`` (not for a busy or failed line); for a party that answers,
``answered`` and the first document: its ``Url`` (or inline ``Twiml``) with CallStatus
``in-progress``. With synchronous AMD that request waits for the verdict and carries AnsweredBy
and MachineDetectionDuration; with ``AsyncAmd=true`` it goes at once, and the verdict goes to
``AsyncAmdStatusCallback`` when ``amd.plan_verdict`` says. The party starts talking when it
answers: what it says before the first stream opens reaches nobody (``caller_audio_lost``).
Then ``completed`` with the final status, and the recordings' callbacks.

Every callback is signed with the account's auth token, whatever credentials created the call,
and goes out in order without holding the call up. The call's clock (``at_ms`` everywhere) starts
when the call is created.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from services.call_sim.amd import Verdict, plan_verdict
from services.call_sim.api_requests import SECRET_PARAMETERS, Account, CreateCall
from services.call_sim.call import TIMEOUT_MARGIN_S, FirstDocument, _Call, drive
from services.call_sim.callee import plan_ring, whole_seconds
from services.call_sim.outbound_wire import CallFacts, amd_params, rfc2822, status_params
from services.call_sim.party import (
    PartyKind,
    PartySettings,
    answer_kind,
    callee_of,
    party_frames,
)
from services.call_sim.recording import SOURCE_API
from services.call_sim.report import CallConfig, CallReport
from shared.audio import FRAME_MS

__all__ = ["Line", "OutboundCall", "place_outbound"]

logger = logging.getLogger("switchboard.call_sim.outbound")


@dataclass(frozen=True)
class Line:
    """What every created call shares: the account, where requests go, who answers."""

    account: Account
    caller_audio: bytes  # μ-law: what a person says, and a machine's greeting
    parties: Mapping[str, PartyKind] = field(default_factory=dict)  # To → who answers
    default_party: PartyKind = "human"
    party: PartySettings = field(default_factory=PartySettings)
    # The edges that serve the app's public URLs (``public_url``), as for an inbound call.
    # Empty: each request goes to the scheme, host and port of the call's Url.
    edge_urls: tuple[str, ...] = ()
    public_url: str | None = None
    api_base_url: str = "https://api.twilio.com"  # where recordings are said to be
    linger_s: float = 2.0
    quiet_s: float = 0.5
    http_timeout_s: float = 10.0


@dataclass
class OutboundCall:
    """One created call: its request, its progress, and (once over) its report."""

    facts: CallFacts
    request: CreateCall
    form: list[tuple[str, str]]  # as received
    auth: str  # "auth-token" or "api-key:SK…"
    party: PartyKind
    amd: dict[str, Any] | None = None  # the verdict, once AMD has decided
    report: CallReport | None = None  # once the call is over
    done: bool = False
    live: _Call | None = None  # while it runs

    def to_dict(self) -> dict[str, Any]:
        """The simulator's view of the call (``GET /_sim/calls/{sid}``): no secrets."""
        request: dict[str, str | list[str]] = {}
        for name, value in self.form:
            if name in SECRET_PARAMETERS:
                continue
            previous = request.get(name)
            if previous is None:
                request[name] = value
            else:
                request[name] = [*([previous] if isinstance(previous, str) else previous), value]
        source = self.report
        if source is None and self.live is not None:
            source = self.live.report  # so far
        facts = self.facts
        return {
            "sid": facts.sid,
            "account_sid": facts.account_sid,
            "auth": self.auth,
            "date_created": rfc2822(facts.date_created),
            "request": request,
            "warnings": [
                {"code": warning.code, "message": warning.message}
                for warning in self.request.warnings
            ],
            "unmodelled": list(self.request.unmodelled),
            "party": self.party,
            "status": facts.status,
            "done": self.done,
            "start_time": None if facts.start_time is None else rfc2822(facts.start_time),
            "end_time": None if facts.end_time is None else rfc2822(facts.end_time),
            "duration_s": facts.duration_s,
            "answered_by": facts.answered_by,
            "amd": self.amd,
            "callbacks": [] if source is None else [c.to_dict() for c in source.callbacks],
            "recordings": [] if source is None else [r.to_dict() for r in source.recordings],
            "report": None if self.report is None else self.report.to_dict(),
        }


def _routing(line: Line, request: CreateCall) -> tuple[list[str], str]:
    """(edge URLs, public URL) for the call's ``_Call``."""
    if line.edge_urls:
        return list(line.edge_urls), line.public_url or line.edge_urls[0]
    urls = (request.url, request.status_callback, request.async_amd_callback)
    first = next((url for url in urls if url), "http://localhost")
    parts = urlsplit(first)
    origin = f"{parts.scheme}://{parts.netloc}"
    return [origin], origin


class _Progress:
    """The call's status callbacks: each one asked for goes out in order, in the background."""

    def __init__(self, call: OutboundCall, runner: _Call, tasks: asyncio.TaskGroup) -> None:
        self._call, self._runner, self._tasks = call, runner, tasks
        self._sequence = 0
        self._last: asyncio.Task[None] | None = None

    def event(self, event: str, call_status: str) -> None:
        request = self._call.request
        if request.status_callback is None or event not in request.status_callback_events:
            return
        recordings = self._runner.recorder.recordings
        api_recording = next((r for r in recordings if r.spec.source == SOURCE_API), None)
        params = status_params(
            self._call.facts,
            call_status=call_status,
            sequence=self._sequence,
            timestamp=datetime.now(UTC),
            recording=api_recording,
        )
        self._sequence += 1
        url, method = request.status_callback, request.status_callback_method
        self._last = self._tasks.create_task(self._send(self._last, event, url, method, params))

    async def _send(
        self,
        previous: asyncio.Task[None] | None,
        event: str,
        url: str,
        method: str,
        params: dict[str, str],
    ) -> None:
        if previous is not None:
            await previous
        await self._runner.callback("call-status", event, url, method, params)

    async def drain(self) -> None:
        if self._last is not None:
            await self._last


def _first_document(request: CreateCall, verdict: Verdict | None) -> FirstDocument:
    params: dict[str, str] = {}
    if verdict is not None and not request.async_amd:
        params = {
            "AnsweredBy": verdict.answered_by,
            "MachineDetectionDuration": str(verdict.duration_ms),
        }
    if request.url is None:
        return FirstDocument(twiml=request.twiml)
    return FirstDocument(
        url=request.url,
        method=request.method,
        status="in-progress",
        params=params,
        fallback_url=request.fallback_url,
        fallback_method=request.fallback_method,
    )


async def _async_amd(call: OutboundCall, runner: _Call, verdict: Verdict) -> None:
    """Send the verdict when AMD reaches it (if the call is still up: else it never does)."""
    await asyncio.sleep(verdict.at_s)
    request = call.request
    call.facts.answered_by = verdict.answered_by
    if call.amd is not None:
        call.amd["at_ms"] = runner.now_ms()
    if request.async_amd_callback is None:
        return
    params = amd_params(
        call_sid=call.facts.sid,
        account_sid=call.facts.account_sid,
        answered_by=verdict.answered_by,
        duration_ms=verdict.duration_ms,
    )
    await runner.callback(
        "amd-status",
        verdict.answered_by,
        request.async_amd_callback,
        request.async_amd_callback_method,
        params,
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _plan_amd(call: OutboundCall, line: Line, answered_ms: float) -> Verdict | None:
    """AMD's verdict for the party that answered at ``answered_ms`` (None: no AMD), noted in
    ``call.amd``."""
    amd = call.request.amd
    if amd is None:
        return None
    settings = line.party
    verdict = plan_verdict(
        answer_kind(call.party),
        amd,
        detect_s=settings.detect_s,
        greeting_s=settings.greeting_s,
        beep_s=settings.beep_s,
    )
    call.amd = {
        "mode": amd.mode,
        "async": call.request.async_amd,
        "answered_by": verdict.answered_by,
        "duration_ms": verdict.duration_ms,
        "answered_ms": answered_ms,  # on the call's clock
        "at_ms": None,  # on the call's clock, once decided
    }
    return verdict


def _budget(runner: _Call, line: Line) -> float:
    """How long the call may run: the party's frames, lingering, and any <Dial>s on top."""
    config = runner.config
    budget = len(runner.outgoing.frames) * FRAME_MS / 1000 + line.linger_s + TIMEOUT_MARGIN_S
    return budget + (config.callee_ring_s + config.callee_talk_s) * (config.max_redirects + 1)


async def _answered(
    call: OutboundCall, runner: _Call, progress: _Progress, line: Line, tasks: asyncio.TaskGroup
) -> None:
    """From the answer to the hang-up."""
    request, facts = call.request, call.facts
    loop = asyncio.get_running_loop()
    answered_at = loop.time()
    runner.outgoing.origin = answered_at  # the party talks from the answer on
    # One instant for everything that starts at the answer: the party's first word and the
    # recording's first sample line up to the sample, however busy the loop is.
    answered_ms = (answered_at - runner.tally.origin) * 1000
    facts.status, facts.start_time, facts.date_updated = "in-progress", _now(), _now()
    if request.recording is not None:
        runner.recorder.start(request.recording, answered_ms)
    verdict = _plan_amd(call, line, answered_ms)
    progress.event("answered", "in-progress")
    amd_task: asyncio.Task[None] | None = None
    if verdict is not None and request.async_amd:
        amd_task = tasks.create_task(_async_amd(call, runner, verdict))
    elif verdict is not None:
        await asyncio.sleep(verdict.at_s)  # the Url waits for the verdict
        facts.answered_by = verdict.answered_by
        if call.amd is not None:
            call.amd["at_ms"] = runner.now_ms()
    try:
        async with asyncio.timeout(request.time_limit_s):
            await drive(runner, _budget(runner, line), _first_document(request, verdict))
    except TimeoutError:
        runner.report.notes.append(f"TimeLimit: the call was cut at {request.time_limit_s} s")
        runner.close_recordings()
    if amd_task is not None and not amd_task.done():
        amd_task.cancel()  # the call ended first: AMD never decided
        runner.report.notes.append("the call ended before AMD decided: no AnsweredBy sent")
    if amd_task is not None:
        await asyncio.gather(amd_task, return_exceptions=True)
    facts.duration_s = whole_seconds(loop.time() - answered_at)
    facts.status = "completed"


async def place_outbound(call: OutboundCall, line: Line) -> None:
    """Place ``call`` to its end; its ``facts`` follow its progress, ``report`` ends it."""
    request, facts = call.request, call.facts
    edge_urls, public_url = _routing(line, request)
    config = CallConfig(
        edge_urls=edge_urls,
        public_url=public_url,
        auth_token=line.account.auth_token,
        caller_audio=line.caller_audio,
        linger_s=line.linger_s,
        quiet_s=line.quiet_s,
        call_sid=facts.sid,
        account_sid=facts.account_sid,
        from_number=request.from_,
        to_number=request.to,
        http_timeout_s=line.http_timeout_s,
        direction="outbound-api",
    )
    frames = party_frames(call.party, line.caller_audio, line.party)
    timeout = httpx.Timeout(line.http_timeout_s)
    # The background tasks (callbacks, AMD) end with the call, even a cancelled one.
    async with (
        httpx.AsyncClient(timeout=timeout, trust_env=False) as http,
        asyncio.TaskGroup() as tasks,
    ):
        runner = _Call(
            config, line.caller_audio, http, frames=frames, api_base_url=line.api_base_url
        )
        call.live = runner
        progress = _Progress(call, runner, tasks)
        try:
            progress.event("initiated", "initiated")
            plan = plan_ring(callee_of(call.party), line.party.ring_s, request.timeout_s, True)
            if plan.status not in ("busy", "failed"):
                facts.status, facts.date_updated = "ringing", _now()
                progress.event("ringing", "ringing")
                await asyncio.sleep(plan.ring_s)
            if plan.answered:
                await _answered(call, runner, progress, line, tasks)
            else:
                facts.status, facts.duration_s = plan.status, 0
            facts.end_time = facts.date_updated = _now()
            progress.event("completed", facts.status)
            await progress.drain()
            await runner.recorder.announce()
        finally:
            runner.recorder.cancel()  # only if cancelled: announce awaited them all
    call.report = runner.finish()
    call.live, call.done = None, True
    logger.info("call %s to %s (%s): %s", facts.sid, request.to, call.party, facts.status)
