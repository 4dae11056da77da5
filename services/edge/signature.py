"""X-Twilio-Signature, computed the way Twilio computes it (docs/protocols.md §2.3).

An HMAC over the full URL Twilio requested followed by every POST parameter, names sorted, each
name immediately followed by its value (a repeated name contributes each distinct value,
sorted), base64-encoded. The URL is rebuilt from PUBLIC_URL, never from the Host header, so the
check holds behind TLS termination and proxies.

Two signing modes: without ``X-Twilio-Webhooks-Signature-Settings`` the key is the account auth
token and the hash SHA-1 (the legacy scheme); with it (``key=<sharedKeyId>,algorithm=…``, sent
when one of the account's Webhook Rules matches) the key is that SharedKey's secret and the
hash the one the header names. The signed string is the same in both.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import urlsplit

__all__ = [
    "HMAC_SHA1",
    "HMAC_SHA256",
    "SETTINGS_HEADER",
    "SigningKeys",
    "Verdict",
    "check_signature",
    "compute_signature",
    "is_valid_signature",
    "parse_signature_settings",
]

SETTINGS_HEADER: Final = "X-Twilio-Webhooks-Signature-Settings"
HMAC_SHA1: Final = "HMAC_SHA1"
HMAC_SHA256: Final = "HMAC_SHA256"
_DIGESTS: Final = {HMAC_SHA1: "sha1", HMAC_SHA256: "sha256"}
_SHOWN_CHARS = 64  # of a header value in a log line: it comes from whoever sent the request

Reason = Literal["bad_signature", "unknown_signature_algorithm", "shared_key_not_configured"]


def compute_signature(
    secret: str, url: str, params: Iterable[tuple[str, str]] = (), algorithm: str = HMAC_SHA1
) -> str:
    """The signature Twilio sends for a request to ``url`` with form ``params``, keyed with
    ``secret`` (auth token or shared key). Raises ``ValueError`` for an unknown algorithm."""
    digest_name = _DIGESTS.get(algorithm.upper())
    if digest_name is None:
        raise ValueError(f"unsupported signature algorithm {algorithm!r}")
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    signed = url + "".join(
        name + value for name in sorted(values) for value in sorted(values[name])
    )
    digest = hmac.new(secret.encode(), signed.encode(), digest_name).digest()
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


def _matches(
    secrets: Sequence[str],
    url: str,
    params: Sequence[tuple[str, str]],
    signature: str,
    algorithm: str,
) -> bool:
    given = signature.encode()
    return any(
        hmac.compare_digest(compute_signature(secret, variant, params, algorithm).encode(), given)
        for secret in secrets
        for variant in _url_variants(url)
    )


def is_valid_signature(
    auth_tokens: Sequence[str],
    url: str,
    params: Sequence[tuple[str, str]],
    signature: str | None,
) -> bool:
    """True when ``signature`` is a legacy (HMAC-SHA1) one by any of ``auth_tokens``."""
    return bool(signature) and _matches(auth_tokens, url, params, signature or "", HMAC_SHA1)


@dataclass(frozen=True, slots=True)
class SigningKeys:
    """What this edge checks signatures with; the current secret of each kind first (it signs
    nearly every request), then the previous one during a rotation."""

    auth_tokens: tuple[str, ...] = ()
    shared_keys: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one check. ``reason`` labels the rejection counter; ``detail`` is one
    line for the log (it never holds a secret)."""

    ok: bool
    reason: Reason | None = None
    detail: str = ""


def parse_signature_settings(header: str) -> tuple[str | None, str]:
    """(key id, algorithm) from ``key=<sharedKeyId>,algorithm=<algorithm>``. A missing
    algorithm means HMAC_SHA1, as in twilio-python's ``get_signature_algorithm``."""
    key_id: str | None = None
    algorithm = HMAC_SHA1
    for part in header.split(","):
        name, separator, value = part.partition("=")
        if not separator or not value.strip():
            continue
        if name.strip() == "algorithm":
            algorithm = value.strip()
        elif name.strip() == "key":
            key_id = value.strip()
    return key_id, algorithm


def _shown(text: str) -> str:
    return repr(text[:_SHOWN_CHARS] + ("…" if len(text) > _SHOWN_CHARS else ""))


def check_signature(
    keys: SigningKeys,
    url: str,
    params: Sequence[tuple[str, str]],
    signature: str | None,
    settings_header: str | None,
) -> Verdict:
    """Check a Twilio request's ``X-Twilio-Signature``, choosing key and hash by its
    ``X-Twilio-Webhooks-Signature-Settings`` header (None or empty: absent).

    Header absent: the auth tokens, HMAC-SHA1. Header present: the shared keys, with the
    header's algorithm (HMAC_SHA1 or HMAC_SHA256, any case); an unknown one is refused, as is a
    header when no shared key is configured.
    """
    if not settings_header or not settings_header.strip():
        mode, secrets, algorithm = "auth token", keys.auth_tokens, HMAC_SHA1
    else:
        key_id, named = parse_signature_settings(settings_header)
        algorithm = named.upper()
        if algorithm not in _DIGESTS:
            return Verdict(
                False,
                "unknown_signature_algorithm",
                f"{SETTINGS_HEADER} names algorithm {_shown(named)}; this edge knows "
                f"{HMAC_SHA1} and {HMAC_SHA256}",
            )
        mode, secrets = f"shared key {_shown(key_id or '?')}", keys.shared_keys
        if not secrets:
            return Verdict(
                False,
                "shared_key_not_configured",
                f"the request is signed with {mode} ({SETTINGS_HEADER}) but this edge has no "
                "shared key: set TWILIO_WEBHOOK_SHARED_KEY to that key's secret",
            )
    if not signature:
        return Verdict(False, "bad_signature", f"missing X-Twilio-Signature ({mode})")
    if not _matches(secrets, url, params, signature, algorithm):
        return Verdict(
            False,
            "bad_signature",
            f"wrong X-Twilio-Signature ({mode}, {algorithm}; signed URL checked: {url})",
        )
    return Verdict(True)
