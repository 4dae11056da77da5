"""The ``twilio`` package's own REST client, pointed at the Twilio API stand-in
(``services/call_sim/twilio_api.py``) instead of ``https://api.twilio.com``.

``StandInHttpClient(base_url)`` is a ``TwilioHttpClient`` that rewrites the API's origin (any
``https://api….twilio.com``, whatever region or edge the environment asks for) to ``base_url``;
everything else, from the form it sends to the errors it raises, is the package's own. It is
synchronous: from async tests, call the client through ``asyncio.to_thread``.
"""

from __future__ import annotations

import re
from typing import Any

from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

__all__ = ["StandInHttpClient", "client"]

_API_ORIGIN = re.compile(r"https://api(\.[a-z0-9-]+)*\.twilio\.com")


class StandInHttpClient(TwilioHttpClient):  # type: ignore[misc]  # twilio ships no types
    def __init__(self, base_url: str) -> None:
        super().__init__(pool_connections=True, timeout=10.0)
        self.base_url = base_url.rstrip("/")
        self.session.trust_env = False  # loopback: no proxies from the environment

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        return super().request(
            method, _API_ORIGIN.sub(self.base_url, url, count=1), *args, **kwargs
        )

    def close(self) -> None:
        self.session.close()


def client(base_url: str, username: str, password: str, account_sid: str) -> Any:
    """A ``twilio.rest.Client`` on the stand-in: the account's SID and auth token, or an API
    key's SID and secret for ``account_sid``. Close ``.http_client`` when done."""
    return Client(username, password, account_sid, http_client=StandInHttpClient(base_url))
