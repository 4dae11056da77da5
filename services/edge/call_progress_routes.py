"""What Twilio reports about a call outside its stream, each route signed like every webhook:

- ``/twilio/outbound/status`` (StatusCallback of an outbound call): initiated, ringing,
  in-progress, then completed, no-answer, busy, failed or canceled. The record moves on
  (``outbound_records.progress``); a final status frees the call's OUTBOUND_MAX_CONCURRENT slot,
  and one that arrives before any stream tells the pre-warmed worker nobody will come.
- ``/twilio/outbound/amd`` (AsyncAmdStatusCallback): who answered. On the record, and to the
  worker, whose model waits for it.
- ``/twilio/recording/status`` (recordingStatusCallback of ``<Start><Recording>``): Twilio's
  recording of the call, its sid, URL, status and duration on the record.

Each answers 204; Twilio ignores the body of a status callback's answer.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.edge.runtime import runtime_of
from services.edge.urls import AMD_PATH, CALL_STATUS_PATH, RECORDING_STATUS_PATH
from services.edge.webhook_request import Refusal, signed_call
from shared.errors import is_retryable
from shared.keys import CallField
from shared.logs import CallLog
from shared.outbound_records import (
    FINAL_STATUSES,
    answered_by_commands,
    progress,
    recording_commands,
    release_slot,
)

__all__ = ["call_progress_routes"]

logger = logging.getLogger("switchboard.edge.http")

_MAX_VALUE_CHARS = 300  # Twilio's values are short; a longer one is cut, never stored whole


def _digits(value: str | None) -> str | None:
    return value if value is not None and value.isdigit() and len(value) < 10 else None


async def call_status(request: Request) -> Response:
    runtime = runtime_of(request)
    try:
        params, call_sid = await signed_call(request, CALL_STATUS_PATH)
    except Refusal as refusal:
        return refusal.response
    log = CallLog(logger, call_sid)
    status = params.get("CallStatus", "")[:32]
    fields: dict[CallField, str | int] = {}
    if (code := _digits(params.get("ErrorCode"))) is not None:
        fields[CallField.TWILIO_ERROR] = code
    if (duration := _digits(params.get("CallDuration"))) is not None:
        fields[CallField.CALL_DURATION] = duration
    runtime.metrics.outbound_status.labels(status or "none").inc()
    try:
        result = await progress(
            runtime.redis, runtime.keys, call_sid, status, fields, runtime.clock
        )
        if status in FINAL_STATUSES:
            await release_slot(runtime.redis, runtime.keys, call_sid)
    except Exception as exc:
        if not is_retryable(exc):
            raise
        log.error("call status %s not recorded: redis unavailable (%s)", status, exc)
        return Response("redis unavailable", status_code=503)
    if not result.found:
        log.warning("Twilio reports %s for a call with no record (expired, or not ours)", status)
    elif status in FINAL_STATUSES:
        error = f", Twilio error {code}" if code else ""
        moved = f": the call is {result.state}" if result.moved else ""
        log.info("outbound call %s%s%s", status, error, moved)
    else:
        log.info("outbound call %s", status)
    return Response(status_code=204)


async def answered_by(request: Request) -> Response:
    runtime = runtime_of(request)
    try:
        params, call_sid = await signed_call(request, AMD_PATH)
    except Refusal as refusal:
        return refusal.response
    log = CallLog(logger, call_sid)
    verdict = params.get("AnsweredBy", "")[:32] or "unknown"
    detection_ms = int(_digits(params.get("MachineDetectionDuration")) or 0)
    runtime.metrics.answered_by.labels(verdict).inc()
    log.info("answered by %s (detection took %d ms)", verdict, detection_ms)
    for command in answered_by_commands(runtime.keys, call_sid, verdict, detection_ms):
        runtime.writer.command(*command)
    return Response(status_code=204)


async def recording_status(request: Request) -> Response:
    runtime = runtime_of(request)
    try:
        params, call_sid = await signed_call(request, RECORDING_STATUS_PATH)
    except Refusal as refusal:
        return refusal.response
    status = params.get("RecordingStatus", "")[:32]
    fields: dict[CallField, object] = {
        CallField.RECORDING_SID: params.get("RecordingSid", "")[:64],
        CallField.RECORDING_URL: params.get("RecordingUrl", "")[:_MAX_VALUE_CHARS],
        CallField.RECORDING_STATUS: status,
    }
    if (duration := _digits(params.get("RecordingDuration"))) is not None:
        fields[CallField.RECORDING_DURATION] = duration
    runtime.metrics.twilio_recordings.labels(status or "none").inc()
    CallLog(logger, call_sid).info(
        "Twilio's recording %s is %s (%s s)",
        fields[CallField.RECORDING_SID],
        status,
        fields.get(CallField.RECORDING_DURATION, "?"),
    )
    for command in recording_commands(runtime.keys, call_sid, fields):
        runtime.writer.command(*command)
    return Response(status_code=204)


def call_progress_routes() -> list[Route]:
    return [
        Route(CALL_STATUS_PATH, call_status, methods=["POST"]),
        Route(AMD_PATH, answered_by, methods=["POST"]),
        Route(RECORDING_STATUS_PATH, recording_status, methods=["POST"]),
    ]
