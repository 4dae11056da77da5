"""Twilio's REST API, through the ``twilio`` package's asynchronous client.

The package has no setting for the API's address, and its own asynchronous HTTP client
(aiohttp) would be a second HTTP stack in the edge. ``RebasedHttpClient`` is the package's
``AsyncHttpClient`` over the edge's httpx client, sending each request to
``TWILIO_API_BASE_URL`` instead of ``https://api.twilio.com`` (the call simulator's stand-in in
tests and the demo). Nothing here blocks the event loop.

``create_call`` asks for one outbound call; a refusal comes back as ``TwilioRefusal`` carrying
Twilio's HTTP status, error code and message, never the credentials.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
from twilio.base.exceptions import TwilioRestException
from twilio.http import AsyncHttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.rest import Client

__all__ = ["TWILIO_API", "RebasedHttpClient", "TwilioRefusal", "create_call", "twilio_client"]

TWILIO_API: Final = "https://api.twilio.com"
REQUEST_TIMEOUT_S: Final = 10.0

logger = logging.getLogger("switchboard.edge.twilio")


class RebasedHttpClient(AsyncHttpClient):  # type: ignore[misc]  # the package is untyped
    """The ``twilio`` package's asynchronous HTTP client, over httpx, at ``base_url``."""

    def __init__(self, http: httpx.AsyncClient, base_url: str) -> None:
        super().__init__(logger, is_async=True, timeout=REQUEST_TIMEOUT_S)
        self._http = http
        self._base = base_url.rstrip("/")

    def rebase(self, url: str) -> str:
        """``url`` of Twilio's API, on ``base_url`` (other hosts of Twilio's kept as they are:
        only api.twilio.com is stood in for)."""
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != TWILIO_API:
            return url
        return self._base + parts.path + (f"?{parts.query}" if parts.query else "")

    async def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the package's interface
        allow_redirects: bool = False,
    ) -> TwilioResponse:
        response = await self._http.request(
            method,
            self.rebase(uri),
            params=_plain(params),
            data=_plain(data),
            headers=headers,
            auth=auth,
            timeout=timeout or self.timeout,
            follow_redirects=allow_redirects,
        )
        return TwilioResponse(response.status_code, response.text, response.headers)


def _plain(values: Mapping[str, object] | None) -> dict[str, Any] | None:
    """Form values as httpx takes them: lists repeat the field (StatusCallbackEvent)."""
    if values is None:
        return None
    return {k: v if isinstance(v, list) else str(v) for k, v in values.items() if v is not None}


def twilio_client(
    http: httpx.AsyncClient,
    base_url: str,
    account_sid: str,
    auth_token: str | None,
    api_key: tuple[str, str] | None,
) -> Client:
    """The package's client for ``account_sid``, with an API key when given (Twilio's
    recommendation for production), else the account's auth token."""
    username, password = api_key if api_key is not None else (account_sid, auth_token or "")
    return Client(
        username,
        password,
        account_sid=account_sid,
        http_client=RebasedHttpClient(http, base_url),
    )


@dataclass(frozen=True, slots=True)
class TwilioRefusal(Exception):
    """Twilio refused the request (``status`` its HTTP status; 0: it could not be reached)."""

    status: int
    code: int | None
    message: str

    def __str__(self) -> str:
        code = f" (error {self.code})" if self.code is not None else ""
        return f"Twilio answered {self.status}{code}: {self.message}"


async def create_call(client: Client, params: Mapping[str, Any]) -> str:
    """Ask Twilio to place a call (``params``: ``CallList.create_async``'s keyword arguments);
    the new call's sid. Raises ``TwilioRefusal``."""
    try:
        call = await client.calls.create_async(**params)
    except TwilioRestException as exc:
        raise TwilioRefusal(exc.status, exc.code, str(exc.msg)[:300]) from None
    except httpx.HTTPError as exc:
        problem = f"Twilio's API cannot be reached: {type(exc).__name__}"
        raise TwilioRefusal(0, None, problem) from None
    sid = call.sid
    if not isinstance(sid, str) or not sid:
        raise TwilioRefusal(502, None, "Twilio's answer has no call sid")
    return sid
