"""How the simulated Twilio signs its requests, with twilio-python's own RequestValidator.

By default with the account auth token (HMAC-SHA1, the legacy scheme). With a shared key, as
Twilio does when one of the account's Webhook Rules matches the URL: the SharedKey's secret and
the Setting's algorithm, and an ``X-Twilio-Webhooks-Signature-Settings`` header naming the key
and the algorithm. The signed string (URL + sorted POST parameters) is the same either way.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from twilio.request_validator import RequestValidator

__all__ = [
    "HMAC_SHA1",
    "HMAC_SHA256",
    "SETTINGS_HEADER",
    "SIGNATURE_ALGORITHMS",
    "Signer",
    "new_shared_key_id",
]

SETTINGS_HEADER: Final = "X-Twilio-Webhooks-Signature-Settings"
HMAC_SHA1: Final = "HMAC_SHA1"
HMAC_SHA256: Final = "HMAC_SHA256"
SIGNATURE_ALGORITHMS: Final = (HMAC_SHA1, HMAC_SHA256)
_ID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32, as in a ULID


def new_shared_key_id() -> str:
    """A plausible SharedKey id: ``webhooks_sharedkey_`` and 26 characters."""
    return "webhooks_sharedkey_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(26))


@dataclass(frozen=True, slots=True)
class Signer:
    """Signs each request: the headers to send with it."""

    auth_token: str
    shared_key: str | None = None
    shared_key_id: str = ""
    algorithm: str = HMAC_SHA256

    def __post_init__(self) -> None:
        if self.shared_key is not None and self.algorithm.upper() not in SIGNATURE_ALGORITHMS:
            raise ValueError(
                f"signature algorithm {self.algorithm!r}: expected one of "
                + ", ".join(SIGNATURE_ALGORITHMS)
            )

    def headers(self, url: str, params: Mapping[str, str]) -> dict[str, str]:
        """``X-Twilio-Signature`` for a request to ``url`` with form ``params`` ({} for a GET
        or the stream upgrade), and the settings header when a shared key signs."""
        if self.shared_key is None:
            signature: str = RequestValidator(self.auth_token).compute_signature(url, params)
            return {"X-Twilio-Signature": signature}
        validator = RequestValidator(self.shared_key)
        signature = validator.compute_signature(url, params, self.algorithm)
        return {
            "X-Twilio-Signature": signature,
            SETTINGS_HEADER: f"key={self.shared_key_id},algorithm={self.algorithm}",
        }
