"""The public and admin listeners (``services/edge/listeners.py``): which paths each port serves,
what a refused path gets and how it is counted, binding, and the settings behind them. Through
Starlette's TestClient, whose connections report the URL's port as the local one
(``scope["server"]``); tests/e2e/test_ports.py does the same over real sockets."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import fakeredis
import fakeredis.aioredis
import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect

from services.edge.app import create_app
from services.edge.listeners import ADMIN, PUBLIC, Listeners, bind, bind_listeners
from services.edge.runtime import RuntimeSlot
from services.edge.signature import compute_signature
from shared.errors import ConfigError
from tests.support import twilio_frames as tf
from tests.support.edge_app import (
    AUTH_TOKEN,
    MEDIA_URL,
    PUBLIC_URL,
    make_settings,
    stream_token,
    voice_params,
)
from tests.support.waiting import eventually_sync

PUBLIC_PORT = 8080
ADMIN_PORT = 8081
PUBLIC_BASE = f"http://testserver:{PUBLIC_PORT}"
ADMIN_BASE = f"http://testserver:{ADMIN_PORT}"
TOKEN = "admin-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
API_TOKEN = "api-token-0123456789abcdef"  # places calls (POST /calls)
API_AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
#: Call control on, with a Twilio that cannot be reached: no test places a real call.
CALL_CONTROL = {
    "API_TOKEN": API_TOKEN,
    "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
    "TWILIO_API_BASE_URL": "http://127.0.0.1:9",
}
REFUSED = "switchboard_edge_listener_refused_total"
#: Every operator route with the token it takes, as (method, path, headers); POST /calls is
#: call control (outbound calls).
OPERATOR_ROUTES = [
    ("GET", "/metrics", AUTH),
    ("GET", "/healthz", AUTH),
    ("GET", "/readyz", AUTH),
    ("GET", "/calls", AUTH),
    ("GET", f"/calls/{tf.CALL_SID}", AUTH),
    ("POST", "/calls", API_AUTH),
]


class Listening:
    """An edge app behind ``Listeners``, on fakeredis, with one client for both ports."""

    def __init__(self, client: TestClient, registry: CollectorRegistry, slot: RuntimeSlot) -> None:
        self.client = client
        self.registry = registry
        self.slot = slot

    def live_calls(self) -> int:
        assert self.slot.runtime is not None
        return len(self.slot.runtime.calls)

    def request(self, base: str, method: str, path: str, **kwargs: Any) -> Any:
        return self.client.request(method, base + path, **kwargs)

    def refused(self, listener: str) -> float:
        return self.registry.get_sample_value(REFUSED, {"listener": listener}) or 0.0

    def voice(self, base: str) -> Any:
        params = voice_params()
        signature = compute_signature(AUTH_TOKEN, PUBLIC_URL + "/twilio/voice", params.items())
        return self.request(
            base, "POST", "/twilio/voice", data=params, headers={"X-Twilio-Signature": signature}
        )

    @contextmanager
    def media(self, base: str, path: str = "/twilio/media") -> Iterator[Any]:
        headers = {"x-twilio-signature": compute_signature(AUTH_TOKEN, MEDIA_URL)}
        url = base.replace("http://", "ws://") + path
        with self.client.websocket_connect(url, headers=headers) as ws:
            yield ws


@pytest.fixture
def listening() -> Iterator[Listening]:
    settings = make_settings(
        ADMIN_TOKEN=TOKEN, PORT=str(PUBLIC_PORT), ADMIN_PORT=str(ADMIN_PORT), **CALL_CONTROL
    )
    registry = CollectorRegistry()
    slot = RuntimeSlot()
    app = create_app(
        settings,
        redis=fakeredis.aioredis.FakeRedis(server=fakeredis.FakeServer()),
        registry=registry,
        slot=slot,
    )
    with TestClient(Listeners(app, slot, PUBLIC_PORT, ADMIN_PORT)) as client:
        eventually_sync(lambda: slot.runtime is not None and slot.runtime.ready)
        yield Listening(client, registry, slot)


def _same(response: Any, expected: Any) -> None:
    """The two responses are indistinguishable (the Date header aside)."""
    assert response.status_code == expected.status_code
    assert response.content == expected.content
    assert {k: v for k, v in response.headers.items() if k != "date"} == {
        k: v for k, v in expected.headers.items() if k != "date"
    }


def test_the_public_port_answers_operator_routes_as_unknown_paths(listening: Listening) -> None:
    unknown = listening.request(PUBLIC_BASE, "GET", "/no-such-path")
    assert unknown.status_code == 404
    for method, path, headers in OPERATOR_ROUTES:
        response = listening.request(PUBLIC_BASE, method, path, headers=headers, json={})
        _same(response, unknown)
    # The unknown path itself is refused by the listener too: nothing outside /twilio/ passes.
    assert listening.refused(PUBLIC) == len(OPERATOR_ROUTES) + 1
    assert listening.refused(ADMIN) == 0


@pytest.mark.parametrize("path", ["/twilio", "/twiliox/voice", "/TWILIO/voice", "/"])
def test_only_paths_under_the_twilio_prefix_pass_the_public_port(
    listening: Listening, path: str
) -> None:
    assert listening.request(PUBLIC_BASE, "GET", path).status_code == 404
    assert listening.refused(PUBLIC) == 1


def test_the_admin_port_serves_operator_routes(listening: Listening) -> None:
    assert listening.request(ADMIN_BASE, "GET", "/healthz").json() == {"status": "ok"}
    assert listening.request(ADMIN_BASE, "GET", "/readyz").status_code == 200
    metrics = listening.request(ADMIN_BASE, "GET", "/metrics")
    assert metrics.status_code == 200 and REFUSED in metrics.text
    calls = listening.request(ADMIN_BASE, "GET", "/calls", headers=AUTH)
    assert calls.status_code == 200 and calls.json()["calls"] == []
    # Call control is routed here: an empty order is refused by the route, not the listener.
    control = listening.request(ADMIN_BASE, "POST", "/calls", headers=API_AUTH, json={})
    assert control.status_code != 404
    assert listening.refused(ADMIN) == 0 and listening.refused(PUBLIC) == 0


def test_a_twilio_call_works_through_the_public_port(listening: Listening) -> None:
    response = listening.voice(PUBLIC_BASE)
    assert response.status_code == 200
    token = stream_token(response.text)
    with listening.media(PUBLIC_BASE) as ws:
        ws.send_json(tf.connected())
        ws.send_json(tf.start(token))
        eventually_sync(lambda: listening.live_calls() == 1)
        calls = listening.request(ADMIN_BASE, "GET", "/calls", headers=AUTH).json()["calls"]
        assert [call["call_sid"] for call in calls] == [tf.CALL_SID]
    assert listening.refused(PUBLIC) == 0 and listening.refused(ADMIN) == 0


def test_the_admin_port_refuses_twilio_routes(listening: Listening) -> None:
    unknown = listening.request(ADMIN_BASE, "GET", "/no-such-path")
    _same(listening.voice(ADMIN_BASE), unknown)
    with pytest.raises(WebSocketDisconnect), listening.media(ADMIN_BASE):
        pass
    assert listening.refused(ADMIN) == 2


def test_a_websocket_off_its_listener_is_closed_like_an_unknown_one(
    listening: Listening,
) -> None:
    with pytest.raises(WebSocketDisconnect) as unknown, listening.media(ADMIN_BASE, "/nowhere"):
        pass
    with pytest.raises(WebSocketDisconnect) as refused, listening.media(PUBLIC_BASE, "/metrics"):
        pass
    assert refused.value.code == unknown.value.code
    assert listening.refused(PUBLIC) == 1 and listening.refused(ADMIN) == 0


async def _no_app(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("not called")


def test_a_connection_of_unknown_origin_gets_the_public_face() -> None:
    listeners = Listeners(_no_app, RuntimeSlot(), PUBLIC_PORT, ADMIN_PORT)
    assert listeners.listener_of({"type": "http", "server": None}) == PUBLIC
    assert listeners.listener_of({"type": "http", "server": ("10.0.0.1", 9999)}) == PUBLIC
    assert listeners.listener_of({"type": "http", "server": ("10.0.0.1", ADMIN_PORT)}) == ADMIN
    with pytest.raises(ValueError, match="must differ"):
        Listeners(_no_app, RuntimeSlot(), ADMIN_PORT, ADMIN_PORT)


# --- binding ---------------------------------------------------------------------------------


def test_bind_listeners_binds_both_ports_and_names_the_one_in_use() -> None:
    probe = bind("127.0.0.1", 0)
    taken = probe.getsockname()[1]
    probe.listen()
    try:
        free = bind("127.0.0.1", 0)
        free_port = free.getsockname()[1]
        free.close()
        settings = make_settings(HOST="127.0.0.1", PORT=str(free_port), ADMIN_PORT=str(taken))
        with pytest.raises(OSError, match=rf"ADMIN_HOST:ADMIN_PORT 127\.0\.0\.1:{taken}"):
            bind_listeners(settings)
        # The public socket bound before the failure was closed: its port is free again.
        bind("127.0.0.1", free_port).close()
    finally:
        probe.close()
    sockets = bind_listeners(settings)
    try:
        ports = [sock.getsockname()[1] for sock in sockets]
        assert ports == [free_port, taken]
        assert all(sock.type == socket.SOCK_STREAM for sock in sockets)
    finally:
        for sock in sockets:
            sock.close()


# --- settings --------------------------------------------------------------------------------


def test_admin_port_defaults_to_8081_on_the_public_interface() -> None:
    settings = make_settings(HOST="10.0.0.5")
    assert settings.port == 8080 and settings.admin_port == 8081
    assert settings.admin_bind_host == "10.0.0.5"
    assert make_settings(ADMIN_HOST="127.0.0.1").admin_bind_host == "127.0.0.1"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "9000", "ADMIN_PORT": "9000"}, "ADMIN_PORT and PORT are both 9000"),
        ({"ADMIN_PORT": "8080"}, "ADMIN_PORT and PORT are both 8080"),
        ({"ADMIN_PORT": "0"}, "ADMIN_PORT='0': expected an integer from 1 to 65535"),
        ({"ADMIN_PORT": "70000"}, "ADMIN_PORT='70000': expected an integer from 1 to 65535"),
    ],
)
def test_admin_port_is_checked_at_start_up(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_settings(**env)
