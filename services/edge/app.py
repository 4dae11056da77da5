"""The edge's Starlette application: Twilio webhooks, the Media Streams socket, health, metrics,
and the read API (``admin_api.py``).

Build it with ``create_app(settings)``; resources are opened in the lifespan, never at import,
and tests may pass their own Redis client and metrics registry.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import redis.asyncio as aioredis
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from services.edge import twiml
from services.edge.admin_api import admin_routes
from services.edge.call_progress_routes import call_progress_routes
from services.edge.media_endpoint import media_endpoint
from services.edge.outbound_api import outbound_routes
from services.edge.probes import probe_routes
from services.edge.runtime import EdgeRuntime, EdgeState, RuntimeSlot, edge_runtime, runtime_of
from services.edge.settings import EdgeSettings
from services.edge.transfer_routes import dial_person, transfer_routes
from services.edge.urls import MEDIA_PATH, RESUME_PATH, STATUS_PATH, VOICE_PATH
from services.edge.webhook_request import (
    Refusal,
    signed_call,
    signed_params,
    stream_twiml,
    twiml_response,
)
from shared.errors import is_retryable
from shared.keys import CallField, CallState
from shared.logs import CallLog
from shared.records import create_call, load_call

__all__ = ["create_app"]

logger = logging.getLogger("switchboard.edge.http")


def _decline(runtime: EdgeRuntime) -> Response:
    """What a caller hears when this edge cannot take the call (DRAIN_RESPONSE, BUSY_MESSAGE)."""
    if runtime.draining and runtime.settings.drain_response == "reject":
        return twiml_response(twiml.reject())
    return twiml_response(twiml.say_and_hangup(runtime.settings.busy_message))


async def voice_webhook(request: Request) -> Response:
    """A new call: pick its agent by the number dialed, record it, dispatch it at once,
    answer ``<Connect><Stream>`` (or ``<Reject>`` when no agent answers that number)."""
    runtime = runtime_of(request)
    try:
        form, call_sid = await signed_call(request, VOICE_PATH)
    except Refusal as refusal:
        return refusal.response
    log = CallLog(logger, call_sid)
    if len(runtime.calls) >= runtime.settings.max_calls_per_edge:
        runtime.metrics.rejected.labels(VOICE_PATH, "edge_full").inc()
        log.warning(
            "declined the call: this edge has %d live calls (EDGE_MAX_CALLS)", len(runtime.calls)
        )
        return _decline(runtime)
    if not runtime.ready:
        runtime.metrics.rejected.labels(VOICE_PATH, "not_ready").inc()
        log.warning(
            "declined the call: edge %s",
            "draining" if runtime.draining else f"not ready (redis up: {runtime.redis_ok})",
        )
        return _decline(runtime)
    if form.get("Direction", "").startswith("outbound"):
        return await _outbound_answered(runtime, call_sid, form, log)
    agent = runtime.settings.agents.for_number(form.get("To", ""))
    if agent is None:
        runtime.metrics.rejected.labels(VOICE_PATH, "no_agent").inc()
        log.warning(
            "rejected the call to %s: no agent of AGENTS_FILE answers that number, and none "
            'has "*"',
            form.get("To") or "(no To)",
        )
        return twiml_response(twiml.reject())
    try:
        created = await create_call(
            runtime.redis,
            runtime.keys,
            call_sid,
            {
                CallField.FROM: form.get("From", ""),
                CallField.TO: form.get("To", ""),
                CallField.ACCOUNT_SID: form.get("AccountSid", ""),
                CallField.DIRECTION: form.get("Direction") or "inbound",
                CallField.AGENT: agent.name,
            },
            runtime.clock,
        )
        record = None if created else await load_call(runtime.redis, runtime.keys, call_sid)
    except Exception as exc:
        if not is_retryable(exc):
            raise
        log.error("declined the call: redis unavailable (%s)", exc)
        return _decline(runtime)
    if record is not None and not record.with_ai:
        return twiml_response(twiml.hangup())
    if created:
        log.info(
            "incoming call from %s to %s (agent %s): dispatched",
            form.get("From"),
            form.get("To"),
            agent.name,
        )
    return stream_twiml(runtime, call_sid, agent)


async def _outbound_answered(
    runtime: EdgeRuntime, call_sid: str, form: dict[str, str], log: CallLog
) -> Response:
    """A call placed through ``POST /calls`` was answered: its record (made when Twilio
    accepted it) names its agent, and a worker has its session warm already. Should Twilio
    answer before that record is written, the call is recorded here, its agent the one whose
    number it was placed from (its variables and machine detection are then lost: logged)."""
    try:
        record = await load_call(runtime.redis, runtime.keys, call_sid)
        if record is None:
            agent = runtime.settings.agents.for_number(form.get("From", ""))
            if agent is None:
                log.warning("an outbound call nobody placed was answered: hanging up")
                return twiml_response(twiml.hangup())
            log.warning("answered before its record was written: served as agent %s", agent.name)
            fields = {
                CallField.FROM: form.get("From", ""),
                CallField.TO: form.get("To", ""),
                CallField.ACCOUNT_SID: form.get("AccountSid", ""),
                CallField.DIRECTION: form.get("Direction", ""),
                CallField.AGENT: agent.name,
            }
            await create_call(runtime.redis, runtime.keys, call_sid, fields, runtime.clock)
            return stream_twiml(runtime, call_sid, agent)
    except Exception as exc:
        if not is_retryable(exc):
            raise
        log.error("declined the answered call: redis unavailable (%s)", exc)
        return _decline(runtime)
    if not record.with_ai:
        log.info("outbound call answered, but it is %s: hanging up", record.state)
        return twiml_response(twiml.hangup())
    agent = runtime.settings.agents.named(record.get(CallField.AGENT) or "")
    log.info("outbound call to %s answered (agent %s)", form.get("To"), record.get(CallField.AGENT))
    return stream_twiml(runtime, call_sid, agent)


async def resume_webhook(request: Request) -> Response:
    """Twilio's ``<Redirect>`` after a stream ended: reconnect a live call; dial the person a
    transferred call goes to; else say why the call ends (no worker: BUSY_MESSAGE; a failure:
    FAILURE_MESSAGE) or just hang up."""
    runtime = runtime_of(request)
    try:
        _, call_sid = await signed_call(request, RESUME_PATH)
    except Refusal as refusal:
        return refusal.response
    log = CallLog(logger, call_sid)
    try:
        record = await load_call(runtime.redis, runtime.keys, call_sid)
    except Exception as exc:
        if not is_retryable(exc):
            raise
        log.error("resume: redis unavailable (%s); hanging up", exc)
        return twiml_response(twiml.hangup())
    if record is not None and record.state is CallState.TRANSFERRED:
        return dial_person(runtime, record, log)
    if record is not None and record.get(CallField.END_REASON) == "no_worker":
        log.info("resume: no worker took the call; playing the busy message")
        return twiml_response(twiml.say_and_hangup(runtime.settings.busy_message))
    if record is not None and record.ended_in_failure:
        log.info(
            "resume: the call ended in failure (%.200s); playing the failure message",
            record.get(CallField.ERROR),
        )
        return twiml_response(twiml.say_and_hangup(runtime.settings.failure_message))
    if record is None or record.ended:
        log.info("resume: call %s; hanging up", "unknown" if record is None else "ended")
        return twiml_response(twiml.hangup())
    log.info("resume: call still live; reconnecting its stream")
    return stream_twiml(runtime, call_sid)


async def stream_status(request: Request) -> Response:
    """Twilio's statusCallback for the stream: the only place handshake failures show."""
    try:
        params = dict(await signed_params(request, STATUS_PATH))
    except Refusal as refusal:
        return refusal.response
    log = CallLog(logger, params.get("CallSid", "?"))
    if params.get("StreamError"):
        log.warning(
            "Twilio reports %s for stream %s: %s",
            params.get("StreamEvent"),
            params.get("StreamSid"),
            params.get("StreamError"),
        )
    else:
        log.info(
            "Twilio reports %s for stream %s", params.get("StreamEvent"), params.get("StreamSid")
        )
    return Response(status_code=204)


async def readyz(request: Request) -> Response:
    runtime = runtime_of(request)
    if runtime.ready:
        return JSONResponse({"ready": True, "calls": len(runtime.calls)})
    reasons = []
    if not runtime.redis_ok:
        reasons.append("redis unreachable")
    if runtime.draining:
        reasons.append("draining")
    if runtime.broken:
        reasons.append("background loop stopped")
    return JSONResponse({"ready": False, "reasons": reasons}, status_code=503)


async def metrics(request: Request) -> Response:
    runtime = runtime_of(request)
    return Response(generate_latest(runtime.registry), media_type=CONTENT_TYPE_LATEST)


def create_app(
    settings: EdgeSettings,
    redis: aioredis.Redis | None = None,
    registry: CollectorRegistry | None = None,
    slot: RuntimeSlot | None = None,
    http: httpx.AsyncClient | None = None,
) -> Starlette:
    """The edge application. ``redis`` and ``registry`` default to fresh ones; ``slot``, if
    given, holds the runtime while the app runs (for the server's drain, and tests); ``http``
    is the client for Twilio's REST API (tests pass one with their own transport)."""
    metrics_registry = registry if registry is not None else CollectorRegistry()
    runtime_slot = slot if slot is not None else RuntimeSlot()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[EdgeState]:
        async with edge_runtime(settings, metrics_registry, redis, http) as runtime:
            if not settings.validate_signature:
                logger.warning(
                    "TWILIO_VALIDATE_SIGNATURE=false: anyone who can reach this edge can place "
                    "calls and open streams. Never run like this on the internet."
                )
            runtime_slot.runtime = runtime
            try:
                yield {"runtime": runtime}
            finally:
                runtime_slot.runtime = None

    routes = [
        Route(VOICE_PATH, voice_webhook, methods=["POST"]),
        Route(RESUME_PATH, resume_webhook, methods=["POST"]),
        Route(STATUS_PATH, stream_status, methods=["POST"]),
        *transfer_routes(),
        *call_progress_routes(),
        WebSocketRoute(MEDIA_PATH, media_endpoint),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        *probe_routes(settings),
        *admin_routes(),
        *outbound_routes(),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
