"""Failures real Realtime sessions have, reproduced on request, and the closes that end them.

``Failures`` is the configuration (all off by default, except the 60-minute cap the real
server always has). ``FailurePlan`` is one session's share of it: fed the caller audio heard
so far and every new response, it says when to send a server error, when to drop the socket,
which response fails and what the rate limits are. ``Close`` is what the session asks the
server to do to its socket. Pure: no sockets, no clocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

__all__ = [
    "MAX_DURATION_CLOSE",
    "Close",
    "DropHow",
    "FailurePlan",
    "Failures",
    "failed_status",
    "max_duration_close",
    "rate_limit_body",
    "server_error_message",
    "transcription_error",
]

Json = dict[str, Any]

MAX_DURATION_CLOSE: Final = 1001  # going away, as the real server closes at its cap
INTERNAL_ERROR_CLOSE: Final = 1011
# Rate limits a small organisation might have; only the direction of "remaining" matters.
REQUESTS_PER_MIN: Final = 5_000
TOKENS_PER_MIN: Final = 400_000
OUTPUT_RESERVE: Final = 4_096  # tokens held back for each response's output while it runs


class DropHow(StrEnum):
    ABRUPT = "abrupt"  # the TCP connection is aborted: no close frame at all
    INTERNAL_ERROR = "1011"
    GOING_AWAY = "1001"
    SERVER_ERROR = "server-error"  # an error event of type server_error, then close 1011


@dataclass(frozen=True, slots=True)
class Failures:
    drop_after_ms: int | None = None  # drop the socket after this much caller audio
    drop_how: DropHow = DropHow.ABRUPT
    drop_sessions: int = 1  # only the first K sessions served drop; 0: every session
    session_max_s: float = 3600.0  # the real server's cap on a session's length
    server_error_after_ms: int | None = None  # one recoverable server_error after this audio
    fail_responses: int = 0  # every Nth response fails (0: none)
    transcription_fails: bool = False  # input transcription reports .failed, not .completed
    rate_limits: bool = False  # rate_limits.updated after each response.created


@dataclass(frozen=True, slots=True)
class Close:
    """How the server must end the connection, after sending what is already queued."""

    code: int | None  # None: abort the TCP connection without a close frame
    reason: str = ""
    dropped: DropHow | None = None  # set when this is a --drop-after-ms drop


def drop_close(how: DropHow) -> Close:
    if how is DropHow.ABRUPT:
        return Close(None, "", how)
    if how is DropHow.GOING_AWAY:
        return Close(1001, "going away", how)
    return Close(INTERNAL_ERROR_CLOSE, "internal server error", how)


def _length(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute" if minutes == 1 else f"{minutes} minutes"
    whole = int(seconds) if seconds == int(seconds) else seconds
    return f"{whole} second" if whole == 1 else f"{whole} seconds"


def max_duration_close(seconds: float) -> Close:
    """The close the real server has been seen to send at its 60-minute cap, with the real
    length in it."""
    return Close(
        MAX_DURATION_CLOSE, f"Your session hit the maximum duration of {_length(seconds)}."
    )


def server_error_message(session_id: str) -> str:
    return (
        "The server had an error while processing your request. Sorry about that! You can "
        "retry your request, or contact us through our help center at help.openai.com if the "
        f"error persists. (Please include the session ID {session_id} in your message.)"
    )


def failed_status(session_id: str) -> Json:
    """``status_details`` of a failed response, shaped as the SDK's RealtimeResponseStatus."""
    return {
        "type": "failed",
        "error": {
            "type": "server_error",
            "code": None,
            "message": server_error_message(session_id),
        },
    }


def transcription_error(item_id: str) -> Json:
    """The ``error`` of ``conversation.item.input_audio_transcription.failed``."""
    return {
        "type": "server_error",
        "code": None,
        "message": f"Input transcription failed for item '{item_id}'.",
        "param": None,
    }


def rate_limit_body(requests_used: int, tokens_used: int) -> list[Json]:
    """The ``rate_limits`` of a ``rate_limits.updated`` event."""
    return [
        {
            "name": "requests",
            "limit": REQUESTS_PER_MIN,
            "remaining": max(0, REQUESTS_PER_MIN - requests_used),
            "reset_seconds": round(60 * requests_used / REQUESTS_PER_MIN, 3),
        },
        {
            "name": "tokens",
            "limit": TOKENS_PER_MIN,
            "remaining": max(0, TOKENS_PER_MIN - tokens_used),
            "reset_seconds": round(60 * tokens_used / TOKENS_PER_MIN, 3),
        },
    ]


class FailurePlan:
    """One session's failures: which fire, and when."""

    def __init__(self, failures: Failures, serial: int) -> None:
        """``serial``: this session's number among those the simulator has served, from 1."""
        self.failures = failures
        chosen = failures.drop_sessions == 0 or serial <= failures.drop_sessions
        self._drop_at = failures.drop_after_ms if chosen else None
        self._server_error_at = failures.server_error_after_ms
        self._responses = 0
        self._tokens = 0

    def server_error_due(self, heard_ms: int) -> bool:
        """True once, when the caller audio heard reaches --server-error-after-ms."""
        due = self._server_error_at is not None and heard_ms >= self._server_error_at
        if due:
            self._server_error_at = None
        return due

    def drop_due(self, heard_ms: int) -> DropHow | None:
        """How to drop, once, when the caller audio heard reaches --drop-after-ms."""
        if self._drop_at is None or heard_ms < self._drop_at:
            return None
        self._drop_at = None
        return self.failures.drop_how

    def response_started(self) -> bool:
        """Count a new response; True if it is one that must fail."""
        self._responses += 1
        every = self.failures.fail_responses
        return every > 0 and self._responses % every == 0

    def rate_limits(self, tokens_used: int) -> list[Json] | None:
        """The limits right after a response is created (None unless --rate-limits): one more
        request, and the tokens used so far plus the new response's output reserve."""
        if not self.failures.rate_limits:
            return None
        self._tokens = max(self._tokens, tokens_used)
        return rate_limit_body(self._responses, self._tokens + OUTPUT_RESERVE * self._responses)
