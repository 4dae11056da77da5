"""``POST /calls``: place an outbound call with an agent.

Behind ``Authorization: Bearer <API_TOKEN>`` (the read-only ADMIN_TOKEN is refused with 403);
without API_TOKEN the route answers 404. In order: the request is checked
(``outbound_request.py``), a slot of OUTBOUND_MAX_CONCURRENT is taken across all edges (429
when none is free), Twilio is asked to place the call (its refusal comes back with its status,
code and message), and the call's record is created, ``queued`` and dispatched at once so a
worker pre-warms the model session while the phone rings. ``201 {"call_sid": "CA…"}``.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.edge.admin_api import bearer_is
from services.edge.outbound_request import (
    MAX_BODY_BYTES,
    BadRequest,
    OutboundRequest,
    create_params,
    parse_outbound,
)
from services.edge.runtime import EdgeRuntime, runtime_of
from services.edge.twilio_rest import TwilioRefusal, create_call
from services.edge.urls import PublicUrls
from shared.errors import is_retryable
from shared.keys import CallField
from shared.logs import CallLog
from shared.outbound_records import (
    MACHINE_DETECTION_TIMEOUT_S,
    create_outbound_call,
    encode_variables,
    release_slot,
    reserve_slot,
    take_slot_over,
)

__all__ = ["outbound_routes"]

logger = logging.getLogger("switchboard.edge.outbound")


def _error(runtime: EdgeRuntime, outcome: str, status: int, body: dict[str, Any]) -> Response:
    runtime.metrics.outbound_requests.labels(outcome).inc()
    headers = {"WWW-Authenticate": 'Bearer realm="switchboard"'} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


async def place_call(request: Request) -> Response:
    runtime = runtime_of(request)
    settings = runtime.settings
    if not settings.places_calls or runtime.twilio is None:
        return JSONResponse({"error": "not found"}, status_code=404)
    if not bearer_is(request, settings.api_token):
        read_only = bearer_is(request, settings.admin_token)
        logger.warning(
            "refused POST /calls: %s",
            "ADMIN_TOKEN is read-only" if read_only else "missing or wrong bearer token",
        )
        if read_only:
            message = "ADMIN_TOKEN is read-only: placing calls takes API_TOKEN"
            return _error(runtime, "read_only_token", 403, {"error": message})
        return _error(runtime, "unauthorized", 401, {"error": "unauthorized"})
    if not runtime.ready:
        return _error(runtime, "not_ready", 503, {"error": "this edge is not ready"})
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return _error(runtime, "invalid", 413, {"error": "request body too large"})
    try:
        wanted = parse_outbound(body, settings.agents, settings.outbound_allowed_prefixes)
    except BadRequest as bad:
        logger.warning("refused POST /calls: %s", bad)
        return _error(runtime, "invalid", bad.status, {"error": str(bad), "problems": bad.problems})
    try:
        return await _place(runtime, wanted)
    except Exception as exc:
        if not is_retryable(exc):
            raise
        logger.error("refused POST /calls: redis unavailable (%s)", exc)
        return _error(runtime, "not_ready", 503, {"error": "redis unavailable"})


async def _place(runtime: EdgeRuntime, wanted: OutboundRequest) -> Response:
    settings = runtime.settings
    placement = f"placing-{secrets.token_hex(8)}"  # the slot's name until Twilio names the call
    if not await reserve_slot(
        runtime.redis, runtime.keys, placement, settings.outbound_max_concurrent, runtime.clock
    ):
        logger.warning(
            "refused POST /calls: %d outbound calls are under way (OUTBOUND_MAX_CONCURRENT)",
            settings.outbound_max_concurrent,
        )
        message = f"{settings.outbound_max_concurrent} outbound calls are under way already"
        return _error(runtime, "limit", 429, {"error": message})
    params = create_params(
        wanted,
        PublicUrls(settings.public_url),
        settings.outbound_ring_timeout_s,
        MACHINE_DETECTION_TIMEOUT_S,
    )
    assert runtime.twilio is not None
    try:
        call_sid = await create_call(runtime.twilio, params)
    except TwilioRefusal as refusal:
        await release_slot(runtime.redis, runtime.keys, placement)
        logger.warning("Twilio refused the call to %s: %s", wanted.to, refusal)
        reached = refusal.status != 0
        outcome = "twilio_refused" if reached else "twilio_unreachable"
        status = refusal.status if 400 <= refusal.status < 500 else 502
        body = {
            "error": str(refusal),
            "twilio_status": refusal.status,
            "twilio_code": refusal.code,
            "message": refusal.message,
        }
        return _error(runtime, outcome, status, body)
    await take_slot_over(runtime.redis, runtime.keys, placement, call_sid)
    fields = {
        CallField.FROM: wanted.from_,
        CallField.TO: wanted.to,
        CallField.ACCOUNT_SID: settings.twilio_account_sid or "",
        CallField.DIRECTION: "outbound-api",
        CallField.AGENT: wanted.agent.name,
        CallField.VARIABLES: encode_variables(wanted.variables),
        CallField.MACHINE_DETECTION: "1" if wanted.machine_detection else "0",
        CallField.RING_TIMEOUT: str(settings.outbound_ring_timeout_s),
    }
    await create_outbound_call(runtime.redis, runtime.keys, call_sid, fields, runtime.clock)
    runtime.metrics.outbound_requests.labels("placed").inc()
    CallLog(logger, call_sid).info(
        "placed an outbound call from %s to %s (agent %s%s): queued, dispatched",
        wanted.from_,
        wanted.to,
        wanted.agent.name,
        ", machine detection" if wanted.machine_detection else "",
    )
    answer = {"call_sid": call_sid, "status": "queued", "agent": wanted.agent.name}
    return JSONResponse(answer, status_code=201)


def outbound_routes() -> list[Route]:
    return [Route("/calls", place_call, methods=["POST"])]
