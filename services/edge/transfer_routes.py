"""Handing a call to a person: the ``<Dial>`` the resume route answers for a transferred call,
what the person hears first (warm transfer), and what happens when the dial ends.

The worker has recorded where the call goes (``transferred_to``, ``transfer_summary``,
``transfer_warm``) and closed the stream; Twilio then follows ``<Redirect>`` to the resume
route, which answers ``<Dial>``. When the dial ends Twilio requests its ``action``: a person
reached ends the call for Switchboard; a person not reached brings the caller back to the AI,
on a new stream, with the conversation so far and a note saying why
(``records.return_from_transfer``). Every route checks Twilio's signature.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.edge import twiml
from services.edge.runtime import EdgeRuntime, runtime_of
from services.edge.urls import TRANSFER_STATUS_PATH, WHISPER_PATH, PublicUrls
from services.edge.webhook_request import (
    Refusal,
    call_sid_of,
    signed_call,
    signed_params,
    stream_twiml,
    twiml_response,
)
from shared.errors import is_retryable
from shared.keys import CallField, CallState
from shared.logs import CallLog
from shared.records import (
    CallRecord,
    Turn,
    load_call,
    return_from_transfer,
    transfer_done_commands,
)
from shared.transfer import REACHED, UNREACHED, caller_still_there, failure_notice

__all__ = ["dial_person", "transfer_routes"]

logger = logging.getLogger("switchboard.edge.http")


def dial_person(runtime: EdgeRuntime, record: CallRecord, log: CallLog) -> Response:
    """The resume route's answer for a transferred call: ``<Dial>`` the person."""
    settings = runtime.settings
    address = record.get(CallField.TRANSFERRED_TO)
    if not address:
        log.error("resume: the call was transferred but names no one to dial")
        return twiml_response(twiml.say_and_hangup(settings.failure_message))
    warm = record.get(CallField.TRANSFER_WARM) == "1"
    urls = PublicUrls(settings.public_url)
    caller_id = settings.transfer_caller_id or record.get(CallField.FROM) or ""
    kind = "warm" if warm else "cold"
    runtime.metrics.transfers.labels(f"dialed_{kind}").inc()
    log.info(
        "resume: transferring the call (%s) to %s, %s",
        kind,
        record.get(CallField.TRANSFER_TARGET),
        address,
    )
    document = twiml.dial(
        address,
        urls.transfer_status,
        caller_id,
        settings.transfer_ring_timeout_s,
        urls.whisper(record.call_sid) if warm else None,
    )
    return twiml_response(document)


async def transfer_status(request: Request) -> Response:
    """``<Dial action>``: the person was reached (the call is over for Switchboard), or not
    (the caller is back with the AI)."""
    runtime = runtime_of(request)
    try:
        params, call_sid = await signed_call(request, TRANSFER_STATUS_PATH)
    except Refusal as refusal:
        return refusal.response
    log = CallLog(logger, call_sid)
    status = params.get("DialCallStatus", "")
    try:
        record = await load_call(runtime.redis, runtime.keys, call_sid)
        if record is None or record.ended:
            log.info("transfer status %s for a call that is over: hanging up", status or "?")
            return twiml_response(twiml.hangup())
        if record.with_ai:
            # A repeated request after the call came back: the same answer again.
            return stream_twiml(runtime, call_sid)
        if status in REACHED or not caller_still_there(params.get("CallStatus", "")):
            outcome = status if status in REACHED else "caller_left"
            runtime.metrics.transfers.labels(outcome).inc()
            for command in transfer_done_commands(runtime.keys, call_sid, status or outcome):
                runtime.writer.command(*command)
            log.info("transfer ended (%s): the call is over for Switchboard", outcome)
            return twiml_response(twiml.hangup())
        return await _back_to_ai(runtime, record, status, log)
    except Exception as exc:
        if not is_retryable(exc):
            raise
        log.error("transfer status: redis unavailable (%s); playing the failure message", exc)
        return twiml_response(twiml.say_and_hangup(runtime.settings.failure_message))


async def _back_to_ai(
    runtime: EdgeRuntime, record: CallRecord, status: str, log: CallLog
) -> Response:
    """The person was not reached: the caller goes back to the AI, told why."""
    status = status or "failed"  # no status at all: the dial did not happen
    target = record.get(CallField.TRANSFER_TARGET) or "the person"
    notice = Turn("system", failure_notice(target, status), runtime.clock.wall_ms())
    call_sid = record.call_sid
    await return_from_transfer(runtime.redis, runtime.keys, call_sid, status, notice, runtime.clock)
    runtime.metrics.transfers.labels(status if status in UNREACHED else "other").inc()
    log.info("transfer not answered (%s): the caller is back with the AI", status)
    return stream_twiml(runtime, call_sid)


async def whisper(request: Request) -> Response:
    """What the person hears on answering a warm transfer, before being connected."""
    runtime = runtime_of(request)
    try:
        await signed_params(request, WHISPER_PATH)
        call_sid = call_sid_of(
            runtime, WHISPER_PATH, request.query_params.get("call"), "the call parameter"
        )
    except Refusal as refusal:
        return refusal.response
    log = CallLog(logger, call_sid)
    try:
        record = await load_call(runtime.redis, runtime.keys, call_sid)
    except Exception as exc:
        if not is_retryable(exc):
            raise
        record = None
        log.warning("whisper: redis unavailable (%s); connecting without the summary", exc)
    summary = record.get(CallField.TRANSFER_SUMMARY) if record is not None else None
    if record is not None and record.state is not CallState.TRANSFERRED:
        log.warning("whisper requested for a call in state %s", record.state)
    log.info("whisper: the person answered; reading them the summary")
    return twiml_response(twiml.say(_whisper_text(summary)))


def _whisper_text(summary: str | None) -> str:
    if summary:
        return f"Transferred call from the assistant. {summary}"
    return "Transferred call from the assistant."


def transfer_routes() -> list[Route]:
    return [
        Route(TRANSFER_STATUS_PATH, transfer_status, methods=["POST"]),
        Route(WHISPER_PATH, whisper, methods=["POST"]),
    ]
