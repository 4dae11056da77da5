"""The read API: live and recent calls, and one call's record and transcript, as JSON.

Behind ``Authorization: Bearer <ADMIN_TOKEN>`` (compared in constant time); without
ADMIN_TOKEN the routes answer 404, as if they did not exist. Read-only: nothing here writes.

- ``GET /calls?limit=N``: the newest calls of the recent-calls index (``Keys.recent_calls``),
  newest first, each with its record's summary fields; calls whose record expired are left out.
- ``GET /calls/{sid}``: the record and the transcript turns.
- ``GET /calls/{sid}/recording``: the call's own recording, a stereo WAV (RECORDINGS_DIR).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from services.edge.recording_files import layout, wav_chunks
from services.edge.runtime import EdgeRuntime, runtime_of
from services.edge.twilio_protocol import CALL_SID_RE
from shared.errors import is_retryable
from shared.keys import RECENT_CALLS_MAX, CallField
from shared.logs import CallLog
from shared.outbound_records import placed_variables
from shared.records import CallRecord, load_call, load_turns

__all__ = ["admin_routes", "bearer_is", "call_view"]

logger = logging.getLogger("switchboard.edge.admin")

DEFAULT_LIMIT = 100
# Worker-internal positions, of no use to a reader.
_HIDDEN = frozenset({CallField.IN_CURSOR, CallField.OUT_CURSOR})
_NUMERIC = frozenset(
    {
        CallField.CREATED_MS,
        CallField.ENDED_MS,
        CallField.DURATION_MS,
        CallField.BYTES_IN,
        CallField.BYTES_OUT,
        CallField.BARGE_INS,
        CallField.ERRORS,
        CallField.RECONNECTS,
        CallField.TOKENS_INPUT_TEXT,
        CallField.TOKENS_INPUT_AUDIO,
        CallField.TOKENS_OUTPUT_TEXT,
        CallField.TOKENS_OUTPUT_AUDIO,
        CallField.RING_TIMEOUT,
        CallField.AMD_MS,
        CallField.RINGING_MS,
        CallField.ANSWERED_MS,
        CallField.COMPLETED_MS,
        CallField.CALL_DURATION,
        CallField.RECORDING_DURATION,
        CallField.TWILIO_ERROR,
    }
)


def call_view(record: CallRecord) -> dict[str, Any]:
    """A call record as JSON: numbers as numbers, internal fields left out, ``live`` added."""
    view: dict[str, Any] = {"call_sid": record.call_sid}
    for name, value in sorted(record.fields.items()):
        if name in _HIDDEN:
            continue
        view[name] = int(value) if name in _NUMERIC and value.lstrip("-").isdigit() else value
    if CallField.VARIABLES in record.fields:
        view[CallField.VARIABLES] = placed_variables(record)
    view["live"] = not record.ended
    return view


def bearer_is(request: Request, token: str | None) -> bool:
    """The request carries ``Authorization: Bearer <token>`` (compared in constant time)."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return (
        token is not None
        and scheme.lower() == "bearer"
        and hmac.compare_digest(given.strip().encode(), token.encode())
    )


def _refusal(runtime: EdgeRuntime, request: Request) -> Response | None:
    """404 when the API is off, 401 without the right bearer token, else None."""
    token = runtime.settings.admin_token
    if token is None:
        return JSONResponse({"error": "not found"}, status_code=404)
    if not bearer_is(request, token):
        runtime.metrics.rejected.labels("admin", "bad_token").inc()
        logger.warning(
            "refused %s %s: missing or wrong bearer token", request.method, request.url.path
        )
        return JSONResponse(
            {"error": "unauthorized"},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="switchboard"'},
        )
    return None


def _limit(request: Request) -> int | None:
    raw = request.query_params.get("limit", str(DEFAULT_LIMIT))
    if not raw.isdigit() or not 1 <= int(raw) <= RECENT_CALLS_MAX:
        return None
    return int(raw)


async def list_calls(request: Request) -> Response:
    runtime = runtime_of(request)
    refused = _refusal(runtime, request)
    if refused is not None:
        return refused
    limit = _limit(request)
    if limit is None:
        message = f"limit must be an integer from 1 to {RECENT_CALLS_MAX}"
        return JSONResponse({"error": message}, status_code=400)
    keys = runtime.keys
    try:
        members: Any = await runtime.redis.zrevrange(keys.recent_calls, 0, limit - 1)
        sids = [member.decode() for member in members]
        async with runtime.redis.pipeline(transaction=False) as pipe:
            for sid in sids:
                pipe.hgetall(keys.call(sid))
            raws: list[dict[bytes, bytes]] = await pipe.execute()
    except Exception as exc:
        return _redis_down(exc)
    records = [CallRecord.from_hash(sid, raw) for sid, raw in zip(sids, raws, strict=True)]
    # None: expired after CALL_RECORD_RETENTION.
    calls = [call_view(record) for record in records if record is not None]
    return JSONResponse({"calls": calls, "live": sum(1 for c in calls if c["live"])})


async def get_call(request: Request) -> Response:
    runtime = runtime_of(request)
    refused = _refusal(runtime, request)
    if refused is not None:
        return refused
    sid = request.path_params["sid"]
    if not CALL_SID_RE.fullmatch(sid):
        return JSONResponse({"error": "no such call"}, status_code=404)
    try:
        record = await load_call(runtime.redis, runtime.keys, sid)
        turns = await load_turns(runtime.redis, runtime.keys, sid) if record else []
    except Exception as exc:
        return _redis_down(exc)
    if record is None:
        return JSONResponse({"error": "no such call"}, status_code=404)
    return JSONResponse(
        {
            "call": call_view(record),
            "turns": [{"role": t.role, "text": t.text, "at_ms": t.at_ms} for t in turns],
        }
    )


def _redis_down(exc: Exception) -> Response:
    if not is_retryable(exc):
        raise exc
    logger.warning("read API: redis unavailable (%s)", exc)
    return JSONResponse({"error": "redis unavailable"}, status_code=503)


async def get_recording(request: Request) -> Response:
    """The call's own recording (RECORDINGS_DIR) as a stereo WAV, 16-bit PCM at 8 kHz: left the
    caller, right what they heard (``recording_files.py``); what is written so far of a call
    still going on. 404 when recording is off or the call has none."""
    runtime = runtime_of(request)
    refused = _refusal(runtime, request)
    if refused is not None:
        return refused
    sid = request.path_params["sid"]
    store = runtime.recordings
    plan = None
    if store is not None and CALL_SID_RE.fullmatch(sid):
        plan = await asyncio.to_thread(layout, store.root / sid)
    if plan is None:
        return JSONResponse({"error": "no recording of this call"}, status_code=404)
    CallLog(logger, sid).info(
        "serving the call's recording: %d segments, %.1f s", plan.segments, plan.samples / 8000
    )
    return StreamingResponse(
        wav_chunks(plan),
        media_type="audio/wav",
        headers={
            "Content-Length": str(plan.wav_bytes),
            "Content-Disposition": f'attachment; filename="{sid}.wav"',
        },
    )


def admin_routes() -> list[Route]:
    return [
        Route("/calls/{sid}/recording", get_recording, methods=["GET"]),
        Route("/calls", list_calls, methods=["GET"]),
        Route("/calls/{sid}", get_call, methods=["GET"]),
    ]
