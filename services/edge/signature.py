"""X-Twilio-Signature, computed the way Twilio computes it (protocols.md §2.3).

HMAC-SHA1 keyed with the account auth token over the full URL Twilio requested followed by
every POST parameter, names sorted, each name immediately followed by its value (a repeated name
contributes each distinct value, sorted), base64-encoded. The URL is rebuilt from PUBLIC_URL,
never from the Host header, so the check holds behind TLS termination and proxies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

__all__ = ["compute_signature", "is_valid_signature"]


def compute_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]] = ()) -> str:
    """The signature Twilio sends for a request to ``url`` with form ``params``."""
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    signed = url + "".join(
        name + value for name in sorted(values) for value in sorted(values[name])
    )
    digest = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _url_variants(url: str) -> tuple[str, ...]:
    """The URL as given, and with its default port added or removed: Twilio has signed both."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        return url, parts._replace(netloc=host).geturl()
    default_port = 443 if parts.scheme in ("https", "wss") else 80
    return url, parts._replace(netloc=f"{host}:{default_port}").geturl()


def is_valid_signature(
    auth_tokens: Sequence[str],
    url: str,
    params: Sequence[tuple[str, str]],
    signature: str | None,
) -> bool:
    """True when ``signature`` matches any of ``auth_tokens`` (two during a token rotation)."""
    if not signature:
        return False
    given = signature.encode()
    return any(
        hmac.compare_digest(compute_signature(token, variant, params).encode(), given)
        for token in auth_tokens
        for variant in _url_variants(url)
    )
