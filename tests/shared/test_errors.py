"""The exception tree and which failures are retryable."""

from __future__ import annotations

import pytest
import redis.exceptions
import websockets.exceptions
from websockets.datastructures import Headers
from websockets.http11 import Response

from shared.errors import (
    ConfigError,
    DecodeError,
    FormatMismatchError,
    ProtocolError,
    RealtimeProtocolError,
    RealtimeSessionError,
    SwitchboardError,
    TwilioProtocolError,
    is_retryable,
)


def test_hierarchy() -> None:
    for cls in (DecodeError, TwilioProtocolError, RealtimeProtocolError):
        assert issubclass(cls, ProtocolError)
    for kind in (ConfigError, ProtocolError, FormatMismatchError, RealtimeSessionError):
        assert issubclass(kind, SwitchboardError)
    assert not issubclass(FormatMismatchError, ProtocolError)


def test_protocol_error_kind() -> None:
    assert ProtocolError("x").kind == "protocol"
    assert DecodeError("x").kind == "bad_message"
    err = RealtimeProtocolError("bad", kind="bad_base64")
    assert err.kind == "bad_base64"
    assert str(err) == "bad"
    assert RealtimeProtocolError("x").kind == "protocol"
    assert DecodeError("x", kind="other").kind == "other"
    # A kind set on one instance does not leak into the class.
    assert DecodeError("y").kind == "bad_message"


def test_session_error_code() -> None:
    assert RealtimeSessionError("x").code == "unknown"
    assert RealtimeSessionError("x", "rate_limit_exceeded").code == "rate_limit_exceeded"


def _status(code: int) -> websockets.exceptions.InvalidStatus:
    return websockets.exceptions.InvalidStatus(Response(code, "status", Headers()))


@pytest.mark.parametrize(
    "exc",
    [
        redis.exceptions.ConnectionError("refused"),
        redis.exceptions.TimeoutError("slow"),
        redis.exceptions.BusyLoadingError("loading"),
        redis.exceptions.ResponseError("LOADING Redis is loading the dataset in memory"),
        redis.exceptions.ResponseError("MASTERDOWN Link with MASTER is down"),
        redis.exceptions.ResponseError("TRYAGAIN Multiple keys request during rehashing"),
        ConnectionRefusedError(),
        OSError("network unreachable"),
        TimeoutError(),  # asyncio.TimeoutError is this one since Python 3.11
        _status(429),
        _status(503),
        websockets.exceptions.InvalidHandshake("bad handshake"),
    ],
    ids=repr,
)
def test_retryable(exc: BaseException) -> None:
    assert is_retryable(exc)


@pytest.mark.parametrize(
    "exc",
    [
        redis.exceptions.ResponseError("WRONGTYPE Operation against a key"),
        redis.exceptions.ResponseError("NOSCRIPT"),
        redis.exceptions.AuthenticationError("invalid password"),
        redis.exceptions.AuthorizationError("NOAUTH"),
        _status(401),
        _status(403),
        _status(404),
        ValueError("bug"),
        DecodeError("bad entry"),
        ConfigError("bad config"),
        KeyError("x"),
    ],
    ids=repr,
)
def test_not_retryable(exc: BaseException) -> None:
    assert not is_retryable(exc)
