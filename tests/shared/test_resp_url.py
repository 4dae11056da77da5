"""REDIS_URL means the same to the audio path's connection (RespPipe) as to redis-py: every
option either is honoured by both — TLS with a client certificate, hostname checks, timeouts,
the client name — or refused at start-up, by name."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.exceptions

from services.devstack import free_port
from services.edge.settings import EdgeSettings
from services.realtime_worker.settings import WorkerSettings
from shared.errors import ConfigError, is_retryable
from shared.resp import HONOURED_OPTIONS, RespPipe, check_url_options

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "query",
    ["health_check_interval=2", "protocol=3", "max_connections=5", "decode_responses=true"],
)
def test_an_option_the_audio_path_cannot_honour_is_refused_by_name(query: str) -> None:
    name = query.split("=")[0]
    with pytest.raises(ValueError, match=name):
        check_url_options(f"redis://127.0.0.1:6379/0?{query}")
    worker_env = {"OPENAI_REALTIME_URL": "ws://127.0.0.1:1/v1", "REDIS_URL": f"redis://h/0?{query}"}
    with pytest.raises(ConfigError, match=f"REDIS_URL.*{name}"):
        WorkerSettings.from_env(worker_env)
    edge_env = {
        "PUBLIC_URL": "https://edge.example.com",
        "TWILIO_AUTH_TOKEN": "t" * 32,
        "REDIS_URL": f"redis://h/0?{query}",
    }
    with pytest.raises(ConfigError, match=f"REDIS_URL.*{name}"):
        EdgeSettings.from_env(edge_env)


def test_every_honoured_option_passes() -> None:
    query = "&".join(
        f"{name}={value}"
        for name, value in {
            "db": "2",
            "client_name": "sb",
            "socket_timeout": "3",
            "socket_connect_timeout": "2",
            "socket_keepalive": "true",
            "ssl_cert_reqs": "required",
            "ssl_ca_certs": "/ca.crt",
            "ssl_ca_path": "/certs",
            "ssl_check_hostname": "false",
            "ssl_certfile": "/c.crt",
            "ssl_keyfile": "/c.key",
            "ssl_password": "pw",
        }.items()
    )
    assert {part.split("=")[0] for part in query.split("&")} == HONOURED_OPTIONS
    check_url_options(f"rediss://user:pw@h:6380/0?{query}")


# --- against real servers --------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test CA, a server certificate for "localhost" and a client certificate."""
    folder = tmp_path_factory.mktemp("tls")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
             "/CN=test-ca", "-keyout", "ca.key", "-out", "ca.crt", cwd=folder)  # fmt: skip
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=folder)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "1", "-out", f"{name}.crt", cwd=folder)  # fmt: skip
    return folder


@pytest.fixture(scope="module")
def tls_redis(certificates: Path) -> Iterator[int]:
    """A private redis-server speaking only TLS and requiring a client certificate."""
    binary = shutil.which("redis-server")
    assert binary is not None, "redis-server is not installed (.ci/run installs it)"
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(certificates / "server.crt"),
         "--tls-key-file", str(certificates / "server.key"),
         "--tls-ca-cert-file", str(certificates / "ca.crt"),
         "--tls-auth-clients", "yes", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the TLS redis-server did not start"
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def _url(port: int, certificates: Path, host: str = "localhost", **extra: str) -> str:
    options = {
        "ssl_ca_certs": str(certificates / "ca.crt"),
        "ssl_certfile": str(certificates / "client.crt"),
        "ssl_keyfile": str(certificates / "client.key"),
        "client_name": "switchboard-audio",
    } | extra
    query = "&".join(f"{k}={v}" for k, v in options.items() if v)
    return f"rediss://{host}:{port}/0?{query}"


async def test_tls_with_a_client_certificate_is_honoured_by_both_clients(
    tls_redis: int, certificates: Path
) -> None:
    url = _url(tls_redis, certificates)
    pipe = RespPipe(url)
    try:
        assert await pipe.execute([("SET", "over-tls", "yes"), ("CLIENT", "GETNAME")]) == [
            b"OK",
            b"switchboard-audio",
        ]
    finally:
        await pipe.aclose()
    control = redis.Redis.from_url(url)
    try:
        assert control.get("over-tls") == b"yes"
        assert control.client_getname() == "switchboard-audio"
    finally:
        control.close()


async def test_without_the_client_certificate_the_audio_path_is_refused(
    tls_redis: int, certificates: Path
) -> None:
    pipe = RespPipe(_url(tls_redis, certificates, ssl_certfile="", ssl_keyfile=""))
    try:
        with pytest.raises(redis.exceptions.ConnectionError):
            await pipe.execute([("PING",)])
    finally:
        await pipe.aclose()


async def test_the_hostname_is_checked_unless_the_url_says_not_to(
    tls_redis: int, certificates: Path
) -> None:
    # The server's certificate names "localhost", not 127.0.0.1.
    checked = RespPipe(_url(tls_redis, certificates, host="127.0.0.1"))
    try:
        with pytest.raises(redis.exceptions.ConnectionError):
            await checked.execute([("PING",)])
    finally:
        await checked.aclose()
    relaxed = RespPipe(_url(tls_redis, certificates, host="127.0.0.1", ssl_check_hostname="false"))
    try:
        assert await relaxed.execute([("PING",)]) == [b"PONG"]
    finally:
        await relaxed.aclose()


async def test_the_urls_socket_timeout_is_the_reply_timeout() -> None:
    # A server that accepts and never answers.
    accepted: list[asyncio.StreamWriter] = []

    def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pipe = RespPipe(f"redis://127.0.0.1:{port}/0?socket_timeout=1", timeout_s=30)
    try:
        started = time.monotonic()
        with pytest.raises(redis.exceptions.TimeoutError) as waited:
            await asyncio.wait_for(pipe.execute([("PING",)]), 10)
        assert time.monotonic() - started < 5  # the URL's 1 s, checked once a second
        assert is_retryable(waited.value)
    finally:
        await pipe.aclose()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
