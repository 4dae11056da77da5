"""Reading a request Twilio made to one of the edge's webhooks: its body (bounded), its
signature (checked against the URL Twilio requested, from PUBLIC_URL), its call sid; and
answering it with TwiML.

Every route Twilio calls goes through ``signed_params``: an unsigned or wrongly signed request
is refused (403) and counted, whatever route it came to.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from services.edge import twiml
from services.edge.runtime import EdgeRuntime, runtime_of
from services.edge.signature import SETTINGS_HEADER, check_signature
from services.edge.stream_token import issue_token
from services.edge.twilio_protocol import CALL_SID_RE
from services.edge.urls import PublicUrls
from shared.agents import Agent

__all__ = [
    "MAX_WEBHOOK_BYTES",
    "Refusal",
    "call_sid_of",
    "signed_params",
    "stream_twiml",
    "twiml_response",
]

logger = logging.getLogger("switchboard.edge.http")

MAX_WEBHOOK_BYTES = 64 * 1024


class Refusal(Exception):
    """The request is refused; ``response`` says why."""

    def __init__(self, response: Response) -> None:
        self.response = response


def twiml_response(document: str) -> Response:
    return Response(document, media_type="text/xml")


async def signed_params(request: Request, route: str) -> list[tuple[str, str]]:
    """The form parameters of a webhook whose X-Twilio-Signature is valid.

    Raises ``Refusal`` (403, or 413 for an oversized body) otherwise.
    """
    runtime = runtime_of(request)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_WEBHOOK_BYTES:
            runtime.metrics.rejected.labels(route, "too_large").inc()
            raise Refusal(Response("request body too large", status_code=413))
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
        raise Refusal(Response("invalid Twilio signature", status_code=403))
    return params


def stream_twiml(runtime: EdgeRuntime, call_sid: str, answering: Agent | None = None) -> Response:
    """``<Connect><Stream>`` for the call (a new token), then the ``<Redirect>`` to resume.
    ``answering``: the agent, when the call is first answered (not a resume): the agent's
    ``recording_notice`` comes first when the call is recorded (by Twilio: ``record``, or by
    Switchboard: RECORDINGS_DIR), then Twilio's recording starts if the agent asks for it."""
    settings = runtime.settings
    urls = PublicUrls(settings.public_url)
    token = issue_token(
        runtime.token_keys[0], call_sid, runtime.clock.wall(), settings.stream_token_ttl_s
    )
    before = ""
    if answering is not None:
        recorded = answering.record or settings.recordings_dir is not None
        if recorded and answering.recording_notice:
            before += twiml.say_verb(answering.recording_notice)
        if answering.record:
            before += twiml.start_recording(urls.recording_status)
    return twiml_response(twiml.connect_stream(urls.media, token, urls.resume, urls.status, before))


async def signed_call(request: Request, route: str) -> tuple[dict[str, str], str]:
    """The form parameters of a signed webhook about one call, and its well-formed CallSid;
    raises ``Refusal`` (403, 413, 400) otherwise."""
    params = dict(await signed_params(request, route))
    return params, call_sid_of(runtime_of(request), route, params.get("CallSid"))


def call_sid_of(runtime: EdgeRuntime, route: str, value: str | None, what: str = "CallSid") -> str:
    """``value`` when it is a well-formed call sid; raises ``Refusal`` (400) otherwise."""
    if value is None or not CALL_SID_RE.fullmatch(value):
        runtime.metrics.rejected.labels(route, "bad_call_sid").inc()
        logger.warning("refused POST %s: %s missing or malformed", route, what)
        raise Refusal(Response(f"{what} missing or malformed", status_code=400))
    return value
