"""The one exception tree of Switchboard.

::

    SwitchboardError
    ├── ConfigError             configuration missing or invalid: fatal at start-up
    ├── ProtocolError           a peer sent something we will not accept (``kind`` names it)
    │   ├── DecodeError         a Redis entry that does not match its schema
    │   ├── TwilioProtocolError a Media Streams message from Twilio (edge)
    │   └── RealtimeProtocolError an event from the Realtime server (worker)
    ├── FormatMismatchError     the Realtime session confirmed audio that is not μ-law
    └── RealtimeSessionError    the Realtime server reported an error or closed the session

Protocol errors end at most the one call they belong to. ``is_retryable`` tells the loops that
talk to Redis and to the Realtime server whether to back off and retry or to give up.
"""

from __future__ import annotations

import asyncio

import redis.exceptions
import websockets.exceptions

__all__ = [
    "ConfigError",
    "DecodeError",
    "FormatMismatchError",
    "ProtocolError",
    "RealtimeProtocolError",
    "RealtimeSessionError",
    "SwitchboardError",
    "TRANSIENT_REPLIES",
    "TwilioProtocolError",
    "is_retryable",
]


class SwitchboardError(Exception):
    """Base of every error Switchboard raises on purpose."""


class ConfigError(SwitchboardError):
    """Configuration is missing or invalid. The message names the variable and the fix."""


class ProtocolError(SwitchboardError):
    """A peer sent something we will not accept. ``kind`` is a short label for metrics."""

    kind: str = "protocol"

    def __init__(self, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind


class DecodeError(ProtocolError):
    """A Redis stream entry that is not a valid message."""

    kind = "bad_message"


class TwilioProtocolError(ProtocolError):
    """A Media Streams message from Twilio that is malformed or out of order."""


class RealtimeProtocolError(ProtocolError):
    """An event from the Realtime server that is malformed."""


class FormatMismatchError(SwitchboardError):
    """The Realtime session is not set to G.711 μ-law both ways; relaying would be noise."""


class RealtimeSessionError(SwitchboardError):
    """The Realtime server sent an ``error`` that ends the session, or closed the socket."""

    def __init__(self, message: str, code: str = "unknown") -> None:
        super().__init__(message)
        self.code = code


#: The error replies a backoff may cure (the first word of each): Redis restarting from disk, or
#: a replica that cannot serve yet; on a cluster, a slot being moved (``MOVED``, ``ASK``,
#: ``TRYAGAIN``) or without a primary for a moment, or a blocked read ended because its node
#: became a replica (a failover).
TRANSIENT_REPLIES = (
    "LOADING",
    "MASTERDOWN",
    "MOVED ",
    "ASK ",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "UNBLOCKED",
)


def is_retryable(exc: BaseException) -> bool:
    """True for transient failures of Redis or the network that a backoff may cure."""
    if isinstance(exc, redis.exceptions.AuthenticationError | redis.exceptions.AuthorizationError):
        return False  # subclasses of ConnectionError, but a wrong password stays wrong
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return True
    if isinstance(
        exc,
        redis.exceptions.ClusterError
        | redis.exceptions.SlotNotCoveredError
        | redis.exceptions.RedisClusterUnreachableError
        | redis.exceptions.AskError  # MOVED too: a slot still moving after the redirects
        | redis.exceptions.TryAgainError,
    ):
        return True  # a cluster between owners of a slot: a failover or a migration
    if isinstance(exc, redis.exceptions.ResponseError):
        return str(exc).startswith(TRANSIENT_REPLIES)
    if isinstance(exc, websockets.exceptions.InvalidStatus):
        return exc.response.status_code in (429, 500, 502, 503, 504)
    return isinstance(exc, OSError | asyncio.TimeoutError | websockets.exceptions.InvalidHandshake)
