"""The edge's Starlette application: Twilio webhooks, the Media Streams socket, health, metrics,
and the read API (``admin_api.py``).

Build it with ``create_app(settings)``; resources are opened in the lifespan, never at import,
and tests may pass their own Redis client and metrics registry.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl

import redis.asyncio as aioredis
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from services.edge import twiml
from services.edge.admin_api import admin_routes
from services.edge.media_endpoint import media_endpoint
from services.edge.runtime import EdgeRuntime, EdgeState, RuntimeSlot, edge_runtime, runtime_of
from services.edge.settings import EdgeSettings
from services.edge.signature import SETTINGS_HEADER, check_signature
from services.edge.stream_token import issue_token
from services.edge.twilio_protocol import CALL_SID_RE
from services.edge.urls import MEDIA_PATH, RESUME_PATH, STATUS_PATH, VOICE_PATH, PublicUrls
from shared.errors import is_retryable
from shared.keys import CallField
from shared.logs import CallLog
from shared.records import create_call, load_call

__all__ = ["create_app"]

logger = logging.getLogger("switchboard.edge.http")

MAX_WEBHOOK_BYTES = 64 * 1024


def _twiml(document: str) -> Response:
    return Response(document, media_type="text/xml")


class _Refusal(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


async def _signed_params(request: Request, route: str) -> list[tuple[str, str]]:
    """The form parameters of a webhook whose X-Twilio-Signature is valid.

    Raises ``_Refusal`` (403, or 413 for an oversized body) otherwise.
    """
    runtime = runtime_of(request)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_WEBHOOK_BYTES:
            runtime.metrics.rejected.labels(route, "too_large").inc()
            raise _Refusal(Response("request body too large", status_code=413))
    params = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    if not runtime.settings.validate_signature:
        return params
    url = PublicUrls(runtime.settings.public_url).http(route)
    if request.url.query:
        url += "?" + request.url.query
    verdict = check_signature(
        runtime.signing_keys,
        url,
        params,
        request.headers.get("x-twilio-signature"),
        request.headers.get(SETTINGS_HEADER),
    )
    if not verdict.ok:
        runtime.metrics.rejected.labels(route, verdict.reason).inc()
        logger.warning("refused POST %s: %s", route, verdict.detail)
        raise _Refusal(Response("invalid Twilio signature", status_code=403))
    return params


def _call_sid(runtime: EdgeRuntime, route: str, params: list[tuple[str, str]]) -> str:
    call_sid = dict(params).get("CallSid", "")
    if not CALL_SID_RE.fullmatch(call_sid):
        runtime.metrics.rejected.labels(route, "bad_call_sid").inc()
        logger.warning("refused POST %s: CallSid missing or malformed", route)
        raise _Refusal(Response("CallSid missing or malformed", status_code=400))
    return call_sid


def _stream_twiml(runtime: EdgeRuntime, call_sid: str) -> Response:
    settings = runtime.settings
    urls = PublicUrls(settings.public_url)
    token = issue_token(
        runtime.token_keys[0], call_sid, runtime.clock.wall(), settings.stream_token_ttl_s
    )
    return _twiml(twiml.connect_stream(urls.media, token, urls.resume, urls.status))


def _decline(runtime: EdgeRuntime) -> Response:
    """What a caller hears when this edge cannot take the call (DRAIN_RESPONSE, BUSY_MESSAGE)."""
    if runtime.draining and runtime.settings.drain_response == "reject":
        return _twiml(twiml.reject())
    return _twiml(twiml.say_and_hangup(runtime.settings.busy_message))


async def voice_webhook(request: Request) -> Response:
    """A new call: record it, dispatch it at once, answer ``<Connect><Stream>``."""
    runtime = runtime_of(request)
    try:
        params = await _signed_params(request, VOICE_PATH)
        call_sid = _call_sid(runtime, VOICE_PATH, params)
    except _Refusal as refusal:
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
    form = dict(params)
    try:
        created = await create_call(
            runtime.redis,
            runtime.keys,
            call_sid,
            {
                CallField.FROM: form.get("From", ""),
                CallField.TO: form.get("To", ""),
                CallField.ACCOUNT_SID: form.get("AccountSid", ""),
            },
            runtime.clock,
        )
        record = None if created else await load_call(runtime.redis, runtime.keys, call_sid)
    except Exception as exc:
        if not is_retryable(exc):
            raise
        log.error("declined the call: redis unavailable (%s)", exc)
        return _decline(runtime)
    if record is not None and record.ended:
        return _twiml(twiml.hangup())
    if created:
        log.info("incoming call from %s to %s: dispatched", form.get("From"), form.get("To"))
    return _stream_twiml(runtime, call_sid)


async def resume_webhook(request: Request) -> Response:
    """Twilio's ``<Redirect>`` after a stream ended: reconnect a live call; else say why the
    call ends (no worker: BUSY_MESSAGE; a failure: FAILURE_MESSAGE) or just hang up."""
    runtime = runtime_of(request)
    try:
        params = await _signed_params(request, RESUME_PATH)
        call_sid = _call_sid(runtime, RESUME_PATH, params)
    except _Refusal as refusal:
        return refusal.response
    log = CallLog(logger, call_sid)
    try:
        record = await load_call(runtime.redis, runtime.keys, call_sid)
    except Exception as exc:
        if not is_retryable(exc):
            raise
        log.error("resume: redis unavailable (%s); hanging up", exc)
        return _twiml(twiml.hangup())
    if record is not None and record.get(CallField.END_REASON) == "no_worker":
        log.info("resume: no worker took the call; playing the busy message")
        return _twiml(twiml.say_and_hangup(runtime.settings.busy_message))
    if record is not None and record.ended_in_failure:
        log.info(
            "resume: the call ended in failure (%.200s); playing the failure message",
            record.get(CallField.ERROR),
        )
        return _twiml(twiml.say_and_hangup(runtime.settings.failure_message))
    if record is None or record.ended:
        log.info("resume: call %s; hanging up", "unknown" if record is None else "ended")
        return _twiml(twiml.hangup())
    log.info("resume: call still live; reconnecting its stream")
    return _stream_twiml(runtime, call_sid)


async def stream_status(request: Request) -> Response:
    """Twilio's statusCallback for the stream: the only place handshake failures show."""
    try:
        params = dict(await _signed_params(request, STATUS_PATH))
    except _Refusal as refusal:
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


async def healthz(request: Request) -> Response:
    runtime = runtime_of(request)
    if runtime.broken:
        return JSONResponse({"status": "broken", "reason": runtime.broken}, status_code=503)
    return JSONResponse({"status": "ok"})


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
) -> Starlette:
    """The edge application. ``redis`` and ``registry`` default to fresh ones; ``slot``, if
    given, holds the runtime while the app runs (for the server's drain, and tests)."""
    metrics_registry = registry if registry is not None else CollectorRegistry()
    runtime_slot = slot if slot is not None else RuntimeSlot()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[EdgeState]:
        async with edge_runtime(settings, metrics_registry, redis) as runtime:
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
        WebSocketRoute(MEDIA_PATH, media_endpoint),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        *admin_routes(),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
