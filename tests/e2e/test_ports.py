"""The edge's two ports, on a real uvicorn edge: ``PORT`` serves only Twilio's routes (anything
else is the 404 of an unknown path, valid tokens or not, and is counted), ``ADMIN_PORT`` serves
the operator's routes and not Twilio's; a call goes through ``PORT``; a bad or busy admin port
stops the edge at start-up, naming the variable."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from services.call_sim import place_call
from services.devstack import DEMO_AUTH_TOKEN, PUBLIC_URL, spawn
from tests.support.ports import allocator
from tests.support.stack import (
    ADMIN_TOKEN,
    StackFactory,
    call_config,
    metric_value,
    read_api,
    scrape,
)
from tests.support.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

REFUSED = "switchboard_edge_listener_refused_total"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
API_TOKEN = "e2e-api-token-0123456789"  # places calls (POST /calls)
API_AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
#: Call control on, with a Twilio that cannot be reached: this test places no real call.
CALL_CONTROL = {
    "API_TOKEN": API_TOKEN,
    "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
    "TWILIO_API_BASE_URL": "http://127.0.0.1:9",
}
#: The operator's routes with the token each takes: health, metrics, the read API and call
#: control (POST /calls).
OPERATOR_ROUTES = [
    ("GET", "/metrics", AUTH),
    ("GET", "/healthz", AUTH),
    ("GET", "/readyz", AUTH),
    ("GET", "/calls", AUTH),
    ("GET", "/calls/CA" + "0" * 32, AUTH),
    ("POST", "/calls", API_AUTH),
]


def _raw_get(port: int, target: str) -> bytes:
    """A GET with ``target`` sent byte for byte (an HTTP client would normalize it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


async def test_public_port_serves_only_twilio_and_admin_port_the_rest(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(
        workers=1, sim_mode="echo", edge_env={"ADMIN_TOKEN": ADMIN_TOKEN, **CALL_CONTROL}
    )
    public, admin = stack.edge_urls[0], stack.edge_admin_urls[0]
    async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
        # PORT: every operator route, token or not, is the 404 of a path that does not exist.
        unknown = await http.get(public + "/no-such-path")
        assert (unknown.status_code, unknown.text) == (404, "Not Found")
        for method, path, token in OPERATOR_ROUTES:
            for headers in ({}, token):
                response = await http.request(method, public + path, headers=headers, json={})
                assert (response.status_code, response.text) == (404, "Not Found"), path
                assert response.headers.keys() == unknown.headers.keys()
        # A WebSocket upgrade to an operator path is refused like an unknown one.
        ws_public = public.replace("http://", "ws://")
        for path in ("/metrics", "/no-such-socket"):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(ws_public + path, proxy=None, open_timeout=5):
                    pass
            assert refused.value.response.status_code == 403
        # Dot segments reach the edge as they are: no route matches them on either port.
        assert _raw_get(stack.edges[0].port, "/twilio/../metrics").startswith(b"HTTP/1.1 404")

        # ADMIN_PORT: the operator's routes work as before.
        assert (await http.get(admin + "/healthz")).json() == {"status": "ok"}
        assert (await http.get(admin + "/readyz")).json()["ready"] is True
        assert (await http.get(admin + "/calls")).status_code == 401
        assert (await http.get(admin + "/calls", headers=AUTH)).status_code == 200
        # Call control is routed to this port: an empty order is refused by the route itself.
        control = await http.post(admin + "/calls", headers=API_AUTH, json={})
        assert control.status_code != 404
        # ... and Twilio's routes are not served here.
        voice = await http.post(admin + "/twilio/voice", data={"CallSid": "CA" + "1" * 32})
        assert (voice.status_code, voice.text) == (404, "Not Found")

    # A Twilio call through PORT, read back through ADMIN_PORT.
    audio = random.Random(41).randbytes(2 * 8000)
    report = await place_call(call_config(stack, audio, hold_s=0.5))
    assert report.problems() == []
    assert report.received_audio == report.sent_audio[: len(report.received_audio)]
    assert len(report.received_audio) >= len(audio) - 8000
    assert read_api(stack, f"/calls/{report.call_sid}")["call"]["call_sid"] == report.call_sid

    metrics = scrape(admin)
    # The unknown path, the routes, the sockets; the dot segments passed (then found no route).
    refused_public = 1 + 2 * len(OPERATOR_ROUTES) + 2
    assert metric_value(metrics, REFUSED, listener="public") == refused_public
    assert metric_value(metrics, REFUSED, listener="admin") == 1


# --- start-up -----------------------------------------------------------------------------------


def _run_edge(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    edge_env = {"PUBLIC_URL": PUBLIC_URL, "TWILIO_AUTH_TOKEN": DEMO_AUTH_TOKEN, **env}
    return subprocess.run(
        [sys.executable, "-m", "services.edge"],
        env={**base, **edge_env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_admin_port_equal_to_port_refuses_to_start() -> None:
    result = _run_edge({"PORT": "18080", "ADMIN_PORT": "18080"})
    assert result.returncode == 2
    assert "ADMIN_PORT and PORT are both 18080" in result.stderr


def test_a_busy_admin_port_stops_the_edge_naming_the_variable() -> None:
    port, admin_port = allocator(), allocator()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", admin_port))
        busy.listen()
        result = _run_edge(
            {
                "HOST": "127.0.0.1",
                "PORT": str(port),
                "ADMIN_PORT": str(admin_port),
                "REDIS_URL": f"redis://127.0.0.1:{allocator()}/0",
            }
        )
    assert result.returncode == 3
    assert f"ADMIN_HOST:ADMIN_PORT 127.0.0.1:{admin_port}" in result.stderr


async def test_admin_host_puts_the_admin_port_on_its_own_interface(tmp_path: Path) -> None:
    admin_host = "127.0.0.2"  # loopback too, but another address than HOST's
    try:
        socket.create_server((admin_host, 0)).close()
    except OSError:
        pytest.skip(f"{admin_host} is not a local address here")
    port, admin_port = allocator(), allocator()
    env = {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "ADMIN_HOST": admin_host,
        "ADMIN_PORT": str(admin_port),
        "PUBLIC_URL": PUBLIC_URL,
        "TWILIO_AUTH_TOKEN": DEMO_AUTH_TOKEN,
        "REDIS_URL": f"redis://127.0.0.1:{allocator()}/0",  # /healthz needs no Redis
    }
    edge = spawn("edge", "services.edge", [], env, tmp_path, port, admin_port)
    try:
        async with httpx.AsyncClient(trust_env=False, timeout=2) as http:

            async def healthy() -> bool:
                try:
                    response = await http.get(f"http://{admin_host}:{admin_port}/healthz")
                except httpx.TransportError:
                    assert edge.alive(), edge.log()
                    return False
                return response.status_code == 200

            await eventually(healthy, 20, "the admin port on ADMIN_HOST")
            with pytest.raises(httpx.ConnectError):
                await http.get(f"http://127.0.0.1:{admin_port}/healthz")
            # PORT stays on HOST: an unsigned webhook reaches the route (403), not a 404.
            voice = await http.post(f"http://127.0.0.1:{port}/twilio/voice", data={})
            assert voice.status_code == 403
    finally:
        assert edge.stop() == 0, edge.log()
