"""The frame path's Redis connection: pipelined commands over one socket, nothing else.

Every audio frame costs the edge and the worker a Redis write and a read. redis-py spends about
twice the CPU of the round trip itself on its pools, retries, stream readers and per-command
objects (``make bench``'s profiles). ``RespPipe`` writes a whole batch of commands, packed by
hiredis, in one ``transport.write`` and parses the replies with hiredis in ``data_received``:
one future per batch, no per-command Python objects beyond the replies.

It serves only ``BatchWriter`` and ``FanInReader``, whose callers retry failed batches. A
failure raises redis-py's exception types, so ``shared.errors.is_retryable`` judges them as
before: connection loss is ``ConnectionError``, a missing reply in time is ``TimeoutError``
(and the connection is dropped, since its replies can no longer be matched to requests). The
next call connects again.

It reads ``REDIS_URL`` as redis-py reads it for the processes' other traffic (``redis://``,
``rediss://``, ``unix://``, user, password, db), and honours every query option listed in
``HONOURED_OPTIONS``: TLS (CA file or directory, verification mode, hostname check, a client
certificate), timeouts, keep-alive and the client name. Any other option would apply to control
traffic but not to audio, so ``check_url_options`` refuses it at start-up, by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, cast

import hiredis
import redis.exceptions
from redis.connection import parse_url

__all__ = [
    "FRAME_RETRY_MAX_S",
    "HONOURED_OPTIONS",
    "Command",
    "Entry",
    "RespPipe",
    "check_url_options",
    "parse_xread",
    "xread_command",
]

Command = tuple[object, ...]
Entry = tuple[bytes, dict[bytes, bytes]]  # (entry id, fields), the shape redis-py gives too

_CLOSED = "Connection closed by server."

#: The longest wait between attempts of the frame path's writes and reads while Redis fails:
#: callers hear nothing until the next attempt after Redis is back (a restart, a failover), and
#: one attempt a second per process costs Redis nothing.
FRAME_RETRY_MAX_S = 1.0

#: REDIS_URL query options the frame path honours as redis-py does.
HONOURED_OPTIONS = frozenset(
    {
        "db",
        "client_name",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_ca_path",
        "ssl_check_hostname",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_password",
    }
)
# What parse_url returns besides query options: the URL's own parts.
_URL_PARTS = frozenset({"host", "port", "path", "username", "password", "connection_class"})


def check_url_options(url: str) -> None:
    """Raise ``ValueError`` naming each query option of ``url`` the frame path does not
    honour (the same URL configures redis-py, which would honour it for control traffic
    only), and for a URL redis-py cannot parse."""
    options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
    unknown = sorted(set(options) - HONOURED_OPTIONS - _URL_PARTS)
    if unknown:
        raise ValueError(
            f"the audio path's Redis connection cannot honour {', '.join(unknown)}: remove "
            f"{'it' if len(unknown) == 1 else 'them'} (supported: "
            f"{', '.join(sorted(HONOURED_OPTIONS))})"
        )


_pack = cast(Callable[[Command], bytes], hiredis.pack_command)  # str, bytes, int or float args


def _response_error(error: hiredis.ReplyError) -> redis.exceptions.RedisError:
    message = str(error)
    if message.startswith(("WRONGPASS", "NOAUTH")):
        return redis.exceptions.AuthenticationError(message)  # never retried
    if message.startswith("NOSCRIPT"):
        return redis.exceptions.NoScriptError(message)
    return redis.exceptions.ResponseError(message)


class _Batch:
    """Replies awaited for one ``execute``."""

    __slots__ = ("future", "replies", "sent_at", "wanted")

    def __init__(self, future: asyncio.Future[list[Any]], wanted: int, sent_at: float) -> None:
        self.future = future
        self.wanted = wanted
        self.sent_at = sent_at
        self.replies: list[Any] = []


class _RespProtocol(asyncio.Protocol):
    """Matches replies to batches in order; fails them all when the connection ends or the
    oldest has waited ``timeout_s`` (checked every second, not timed per request: a timer per
    frame would cost more than the frame)."""

    def __init__(self, timeout_s: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.timeout_s = timeout_s
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()
        self.waiting: deque[_Batch] = deque()
        self.closed = False
        self.lost = self.loop.create_future()  # done once the socket is really closed
        self._watchdog: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._watchdog = self.loop.call_later(1.0, self._check_overdue)

    def send(self, data: bytes, wanted: int) -> asyncio.Future[list[Any]]:
        future: asyncio.Future[list[Any]] = self.loop.create_future()
        self.waiting.append(_Batch(future, wanted, self.loop.time()))
        assert self.transport is not None
        self.transport.write(data)
        return future

    def data_received(self, data: bytes) -> None:
        reader, waiting = self.reader, self.waiting
        reader.feed(data)
        while True:
            reply = reader.gets()
            if reply is False:
                return
            if not waiting:  # a reply nobody asked for: the stream is out of step
                self.fail(redis.exceptions.ConnectionError("unexpected reply from Redis"))
                return
            batch = waiting[0]
            if isinstance(reply, hiredis.ReplyError):
                reply = _response_error(reply)
            batch.replies.append(reply)
            if len(batch.replies) == batch.wanted:
                waiting.popleft()
                if not batch.future.done():
                    batch.future.set_result(batch.replies)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        self.fail(redis.exceptions.ConnectionError(f"{_CLOSED} ({exc})" if exc else _CLOSED))

    def fail(self, error: Exception) -> None:
        """End the connection; every batch still waiting gets ``error``."""
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        while self.waiting:
            future = self.waiting.popleft().future
            if not future.done():
                future.set_exception(error)
        if self.transport is not None:
            self.transport.close()

    def _check_overdue(self) -> None:
        if self.waiting and self.loop.time() - self.waiting[0].sent_at > self.timeout_s:
            self.fail(
                redis.exceptions.TimeoutError(f"no reply from Redis within {self.timeout_s:.0f} s")
            )
        elif not self.closed:
            self._watchdog = self.loop.call_later(1.0, self._check_overdue)


class RespPipe:
    """One Redis connection for batches of commands; connects on first use and after a loss.

    ``execute(commands)`` returns one reply per command, a rejected command's reply being a
    ``redis.exceptions.ResponseError`` (never raised: the caller decides). ``xread`` is a
    blocking ``XREAD``. Not safe for concurrent callers: each user owns its pipe.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 10.0,
        connect_timeout_s: float = 5.0,
        min_timeout_s: float = 0.0,
    ):
        """``timeout_s``/``connect_timeout_s``: unless the URL's ``socket_timeout`` or
        ``socket_connect_timeout`` say otherwise; ``min_timeout_s``: the least reply timeout
        (a blocking read waits that long by design)."""
        check_url_options(url)
        self._options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        options = self._options
        self._timeout_s = max(min_timeout_s, float(options.get("socket_timeout") or timeout_s))
        self._connect_timeout_s = float(options.get("socket_connect_timeout") or connect_timeout_s)
        self._protocol: _RespProtocol | None = None

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """Send ``commands`` in one write; their replies, in order."""
        if not commands:
            return []
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._connect()
        return await self._round_trip(
            protocol, b"".join([_pack(args) for args in commands]), len(commands)
        )

    async def xread(
        self, streams: dict[str, bytes | str], *, count: int, block_ms: int
    ) -> list[tuple[bytes, list[Entry]]]:
        """``XREAD COUNT count BLOCK block_ms STREAMS …``: per stream with news, its entries."""
        return parse_xread(await self.execute([xread_command(streams, count, block_ms)]))

    async def aclose(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            protocol.fail(redis.exceptions.ConnectionError("closed by this process"))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(protocol.lost), 1.0)

    @staticmethod
    async def _round_trip(protocol: _RespProtocol, data: bytes, wanted: int) -> list[Any]:
        # A caller cancelled meanwhile leaves its batch queued: its replies are read and
        # dropped, so later replies still meet their own requests.
        return await protocol.send(data, wanted)

    async def _connect(self) -> _RespProtocol:
        options = self._options
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                make = functools.partial(_RespProtocol, self._timeout_s)
                if "path" in options:
                    _, protocol = await loop.create_unix_connection(make, options["path"])
                else:
                    _, protocol = await loop.create_connection(
                        make,
                        options.get("host", "localhost"),
                        int(options.get("port", 6379)),
                        ssl=_ssl_context(options),
                    )
        except (OSError, TimeoutError) as exc:
            raise redis.exceptions.ConnectionError(
                f"cannot connect to Redis: {exc or type(exc).__name__}"
            ) from None
        if options.get("socket_keepalive"):
            sock = protocol.transport.get_extra_info("socket") if protocol.transport else None
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        setup: list[Command] = []
        password = options.get("password")
        if password is not None:
            username = options.get("username")
            setup.append(("AUTH", username, password) if username else ("AUTH", password))
        if int(options.get("db", 0) or 0):
            setup.append(("SELECT", int(options["db"])))
        if options.get("client_name"):
            setup.append(("CLIENT", "SETNAME", options["client_name"]))
        if setup:
            data = b"".join([_pack(args) for args in setup])
            for reply in await self._round_trip(protocol, data, len(setup)):
                if isinstance(reply, Exception):
                    protocol.fail(redis.exceptions.ConnectionError(_CLOSED))
                    raise reply
        self._protocol = protocol
        return protocol


def xread_command(streams: dict[str, bytes | str], count: int, block_ms: int) -> Command:
    """``XREAD COUNT count BLOCK block_ms STREAMS`` the streams, each after its id."""
    return ("XREAD", "COUNT", count, "BLOCK", block_ms, "STREAMS", *streams, *streams.values())


def parse_xread(replies: list[Any]) -> list[tuple[bytes, list[Entry]]]:
    """The one reply of an ``XREAD`` batch (hiredis's lists) as (stream, entries) pairs;
    raises the error Redis answered instead."""
    (reply,) = replies
    if isinstance(reply, Exception):
        raise reply
    if not reply:
        return []
    return [
        (stream, [(entry_id, _fields(flat)) for entry_id, flat in entries])
        for stream, entries in reply
    ]


def _fields(flat: list[bytes]) -> dict[bytes, bytes]:
    if len(flat) == 2:  # every entry of ours: one field
        return {flat[0]: flat[1]}
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _ssl_context(options: dict[str, Any]) -> ssl.SSLContext | None:
    """The TLS context redis-py's SSLConnection would build from the same options."""
    connection_class = options.get("connection_class")
    if connection_class is None or connection_class.__name__ != "SSLConnection":
        return None
    context = ssl.create_default_context(
        cafile=options.get("ssl_ca_certs"), capath=options.get("ssl_ca_path")
    )
    requirement = str(options.get("ssl_cert_reqs", "required")).lower()
    if requirement in ("none", "optional"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE if requirement == "none" else ssl.CERT_OPTIONAL
    elif options.get("ssl_check_hostname") is False:
        context.check_hostname = False
    if options.get("ssl_certfile"):
        context.load_cert_chain(
            options["ssl_certfile"], options.get("ssl_keyfile"), options.get("ssl_password")
        )
    return context
