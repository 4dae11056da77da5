"""RespPipe, the frame path's Redis connection, against a real redis-server.

The server on 127.0.0.1:6379 when one answers (keys under a random prefix, deleted after),
else a private one; a private one too where a test needs a password or a unix socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import ssl
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.exceptions
from redis.connection import parse_url

from services.devstack import RedisHandle, free_port, provide_redis, start_redis_server
from shared.errors import is_retryable
from shared.messages import ENTRY_FIELD, InboundAudio, decode, encode
from shared.resp import RespPipe, _ssl_context
from shared.streams import BatchWriter, FanInReader

pytestmark = pytest.mark.anyio

ALL_BYTES = bytes(range(256)) * 4


@pytest.fixture(scope="module")
def redis_handle() -> Iterator[RedisHandle]:
    handle = provide_redis("redis://127.0.0.1:6379/0")
    if handle.kind == "fakeredis":
        handle.close()
        handle = start_redis_server()
    yield handle
    handle.close()


@pytest.fixture
def prefix(redis_handle: RedisHandle) -> Iterator[str]:
    prefix = f"resp-test-{uuid.uuid4().hex[:8]}"
    yield prefix
    client = redis.Redis.from_url(redis_handle.url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
async def pipe(redis_handle: RedisHandle) -> AsyncIterator[RespPipe]:
    pipe = RespPipe(redis_handle.url, timeout_s=5.0)
    yield pipe
    await pipe.aclose()


async def test_replies_come_back_in_order_and_a_rejected_command_stands_alone(
    pipe: RespPipe, prefix: str
) -> None:
    replies = await pipe.execute(
        [
            ("SET", f"{prefix}:a", "text"),
            ("INCR", f"{prefix}:a"),  # not an integer: rejected
            ("INCR", f"{prefix}:n"),
            ("GET", f"{prefix}:a"),
        ]
    )
    assert replies[0] == b"OK"
    assert isinstance(replies[1], redis.exceptions.ResponseError)
    assert "not an integer" in str(replies[1])
    assert not is_retryable(replies[1])
    assert replies[2:] == [1, b"text"]


async def test_xread_gives_every_byte_back_in_redis_py_shape(pipe: RespPipe, prefix: str) -> None:
    stream = f"{prefix}:in"
    sent = [InboundAudio(ALL_BYTES[i:] + ALL_BYTES[:i], i, 1.0) for i in range(0, 256, 32)]
    await pipe.execute([("XADD", stream, "*", ENTRY_FIELD, encode(m)) for m in sent])
    reply = await pipe.xread({stream: "0-0"}, count=100, block_ms=100)
    assert [name for name, _ in reply] == [stream.encode()]
    entries = reply[0][1]
    assert all(
        isinstance(entry_id, bytes) and set(fields) == {ENTRY_FIELD} for entry_id, fields in entries
    )
    assert [decode(fields[ENTRY_FIELD]) for _, fields in entries] == sent

    # Nothing new: the blocking read times out empty.
    assert await pipe.xread({stream: entries[-1][0]}, count=100, block_ms=20) == []


async def test_a_lost_connection_fails_the_read_in_flight_and_the_next_call_reconnects(
    pipe: RespPipe, redis_handle: RedisHandle, prefix: str
) -> None:
    await pipe.execute([("CLIENT", "SETNAME", f"{prefix}-pipe")])
    read = asyncio.create_task(pipe.xread({f"{prefix}:quiet": "$"}, count=1, block_ms=5000))
    await asyncio.sleep(0.1)
    admin = redis.Redis.from_url(redis_handle.url)
    try:
        killed = next(c for c in admin.client_list() if c["name"] == f"{prefix}-pipe")
        admin.client_kill_filter(_id=killed["id"])
    finally:
        admin.close()
    with pytest.raises(redis.exceptions.ConnectionError) as lost:
        await asyncio.wait_for(read, 2.0)
    assert is_retryable(lost.value)

    assert await pipe.execute([("SET", f"{prefix}:after", "1"), ("GET", f"{prefix}:after")]) == [
        b"OK",
        b"1",
    ]


async def test_a_cancelled_read_does_not_hand_its_reply_to_the_next_request(
    pipe: RespPipe, prefix: str
) -> None:
    stream = f"{prefix}:s"
    read = asyncio.create_task(pipe.xread({stream: "$"}, count=1, block_ms=300))
    await asyncio.sleep(0.05)
    read.cancel()
    with pytest.raises(asyncio.CancelledError):
        await read
    # The XREAD's late (nil) reply must not answer these.
    assert await pipe.execute([("SET", f"{prefix}:k", "v")]) == [b"OK"]
    assert await pipe.execute([("GET", f"{prefix}:k")]) == [b"v"]


async def test_a_server_that_never_answers_times_out_and_the_error_is_retryable() -> None:
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while await reader.read(1024):
                pass
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pipe = RespPipe(f"redis://127.0.0.1:{port}/0", timeout_s=0.2)
    try:
        started = time.monotonic()
        with pytest.raises(redis.exceptions.TimeoutError) as timed_out:
            await asyncio.wait_for(pipe.execute([("PING",)]), 5.0)
        assert time.monotonic() - started < 3.0
        assert is_retryable(timed_out.value)
    finally:
        await pipe.aclose()
        server.close()
        await server.wait_closed()


async def test_nothing_listening_is_a_retryable_connection_error() -> None:
    pipe = RespPipe(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(redis.exceptions.ConnectionError) as refused:
        await pipe.execute([("PING",)])
    assert is_retryable(refused.value)


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A redis-server with a password, on a port and a unix socket: (tcp url, socket path)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (Debian: apt-get install redis-server)")
    port = free_port()
    socket_path = str(tmp_path_factory.mktemp("redis") / "redis.sock")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        + ["--unixsocket", socket_path, "--requirepass", "s3cret-pw"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not Path(socket_path).exists():
            if time.monotonic() > deadline:
                pytest.fail("private redis-server did not start")
            time.sleep(0.02)
        yield f"127.0.0.1:{port}", socket_path
    finally:
        process.terminate()
        process.wait(10)


async def test_password_and_db_from_the_url(private_redis: tuple[str, str]) -> None:
    address, _ = private_redis
    pipe = RespPipe(f"redis://:s3cret-pw@{address}/3")
    try:
        await pipe.execute([("SET", "resp-db", "in db 3")])
    finally:
        await pipe.aclose()
    db3 = redis.Redis.from_url(f"redis://:s3cret-pw@{address}/3")
    db0 = redis.Redis.from_url(f"redis://:s3cret-pw@{address}/0")
    try:
        assert db3.get("resp-db") == b"in db 3"
        assert db0.get("resp-db") is None
    finally:
        db3.close()
        db0.close()


async def test_a_wrong_password_is_not_retried_and_not_repeated(
    private_redis: tuple[str, str],
) -> None:
    address, _ = private_redis
    pipe = RespPipe(f"redis://:wrong-pw@{address}/0")
    with pytest.raises(redis.exceptions.AuthenticationError) as refused:
        await pipe.execute([("PING",)])
    assert not is_retryable(refused.value)
    assert "wrong-pw" not in str(refused.value)


async def test_unix_socket_url(private_redis: tuple[str, str]) -> None:
    _, socket_path = private_redis
    pipe = RespPipe(f"unix://:s3cret-pw@{socket_path}?db=2")
    try:
        assert await pipe.execute([("SET", "over-unix", "yes"), ("GET", "over-unix")]) == [
            b"OK",
            b"yes",
        ]
    finally:
        await pipe.aclose()
    db2 = redis.Redis.from_url(f"unix://:s3cret-pw@{socket_path}?db=2")
    try:
        assert db2.get("over-unix") == b"yes"
    finally:
        db2.close()


def test_tls_settings_follow_the_url() -> None:
    assert _ssl_context(_parse_url("redis://h:6379/0")) is None
    strict = _ssl_context(_parse_url("rediss://h:6380/0"))
    assert strict is not None
    assert strict.verify_mode is ssl.CERT_REQUIRED and strict.check_hostname
    relaxed = _ssl_context(_parse_url("rediss://h:6380/0?ssl_cert_reqs=none"))
    assert relaxed is not None
    assert relaxed.verify_mode is ssl.CERT_NONE and not relaxed.check_hostname


async def test_writer_and_reader_over_resp_pipes_carry_frames_bit_exact_and_fence_writes(
    redis_handle: RedisHandle, prefix: str
) -> None:
    """The edge's and worker's production path: BatchWriter and FanInReader on RespPipes."""
    write_pipe, read_pipe = RespPipe(redis_handle.url), RespPipe(redis_handle.url, timeout_s=5.0)
    refused = _Counter()
    writer = BatchWriter(write_pipe, fenced=refused)
    reader = FanInReader(read_pipe, writer, f"{prefix}:wake", block_ms=200)
    received: list[bytes] = []
    stream, lease = f"{prefix}:out", f"{prefix}:lease"
    frames = [InboundAudio(os.urandom(160), i, 1.0) for i in range(200)]

    def sink(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> bool:
        received.extend(fields[ENTRY_FIELD] for _, fields in entries)
        return True

    await write_pipe.execute([("SET", lease, "w1", "PX", 60_000)])
    tasks = [asyncio.create_task(writer.run()), asyncio.create_task(reader.run())]
    try:
        reader.subscribe(stream, sink)
        for i, frame in enumerate(frames):
            owner = "w1" if i % 2 == 0 else "w2"  # w2 does not hold the lease: refused
            await writer.fenced_xadd(lease, owner, stream, [frame], 1000)
        await asyncio.wait_for(writer.flush(), 5.0)
        await asyncio.wait_for(_until(lambda: len(received) >= 100), 5.0)
        assert [decode(raw) for raw in received] == frames[0::2]
        assert refused.count == 100
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await write_pipe.aclose()
        await read_pipe.aclose()


def _parse_url(url: str) -> dict[str, Any]:
    return parse_url(url)  # type: ignore[no-untyped-call,no-any-return]


class _Counter:
    def __init__(self) -> None:
        self.count = 0

    def inc(self, amount: float = 1) -> None:
        self.count += int(amount)


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():  # noqa: ASYNC110 (the sink is a plain callback; polling keeps it so)
        await asyncio.sleep(0.01)
