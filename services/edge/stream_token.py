"""Per-call stream tokens: the proof a Media Streams socket belongs to the call we answered.

The edge puts a token in the TwiML ``<Parameter name="token">``; Twilio hands it back in
``start.customParameters``. A token is ``v1.<expiry>.<mac>``, where the MAC is HMAC-SHA256 over
the call sid and the expiry, so it is bound to one call, expires, and is checked in constant
time. That the call has not ended is checked against the call record, not here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Final

__all__ = ["TokenError", "derive_token_key", "issue_token", "verify_token"]

_VERSION: Final = "v1"


class TokenError(Exception):
    """The token is malformed, forged, for another call, or expired. ``kind`` says which."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def derive_token_key(secret: str) -> bytes:
    """A key for tokens, derived so the auth token itself is never used as a MAC key twice."""
    return hmac.new(secret.encode(), b"switchboard stream token v1", hashlib.sha256).digest()


def _mac(key: bytes, call_sid: str, expires: int) -> str:
    digest = hmac.new(key, f"{call_sid}.{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def issue_token(key: bytes, call_sid: str, now: float, ttl_s: int) -> str:
    """A token for ``call_sid`` valid for ``ttl_s`` seconds from ``now``."""
    expires = int(now) + ttl_s
    return f"{_VERSION}.{expires}.{_mac(key, call_sid, expires)}"


def verify_token(keys: list[bytes], token: str, call_sid: str, now: float) -> None:
    """Return if ``token`` was issued for ``call_sid`` with one of ``keys`` and is unexpired.

    Raises ``TokenError`` otherwise (kinds: malformed, bad_token, expired).
    """
    parts = token.split(".")
    # ASCII digits only: str.isdigit() also takes digits int() rejects ("²") or reads ("٣").
    if (
        len(parts) != 3
        or parts[0] != _VERSION
        or not (parts[1].isascii() and parts[1].isdigit())
        or len(parts[1]) > 12
    ):
        raise TokenError("malformed", "stream token is malformed")
    expires = int(parts[1])
    given = parts[2].encode()
    # Check every key whatever the outcome, so timing does not tell which one matched.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(_mac(key, call_sid, expires).encode(), given)
    if not matched:
        raise TokenError("bad_token", "stream token does not belong to this call")
    if now > expires:
        raise TokenError("expired", "stream token has expired")
