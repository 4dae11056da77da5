"""Logging: one line per event, the call sid on every line about a call, secrets redacted.

Use ``CallLog(logger, call_sid)`` for anything about one call. Per-frame detail goes to DEBUG
behind ``CallLog.debug_enabled`` (checked once per call), so a busy call costs nothing at INFO.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, MutableMapping
from typing import Any

__all__ = ["CallLog", "setup_logging"]


class _Formatter(logging.Formatter):
    """``2026-11-24T19:48:00.123Z INFO edge.media call=CA… message``, secrets masked."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(call)s %(message)s")
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + (
            f".{int(record.msecs):03d}Z"
        )

    def format(self, record: logging.LogRecord) -> str:
        sid = getattr(record, "call_sid", None)
        record.call = f" call={sid}" if sid else ""
        line = super().format(record)
        for secret in self._secrets:
            line = line.replace(secret, "***")
        return line


def setup_logging(level: str, secrets: Iterable[str | None] = ()) -> None:
    """Send every log line to stderr at ``level``; mask each of ``secrets`` wherever it appears."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(s for s in secrets if s))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries log each connection and frame at INFO/DEBUG; keep their noise out of ours.
    for noisy in ("websockets", "uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


class CallLog(logging.LoggerAdapter[logging.Logger]):
    """A logger that stamps ``call=<sid>`` on every line."""

    def __init__(self, logger: logging.Logger, call_sid: str) -> None:
        super().__init__(logger, {"call_sid": call_sid})
        self.debug_enabled = logger.isEnabledFor(logging.DEBUG)

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(kwargs.get("extra") or {}), **(self.extra or {})}
        return msg, kwargs
