"""The edge's two listeners: a public port that serves only Twilio, a private one for operators.

One uvicorn server, one app and one lifespan serve two sockets, so both listeners share the
edge's state: a drain or a stopped background loop shows on both. ``Listeners`` wraps the app
and routes each connection by the local port it arrived on (``scope["server"]``, the socket's
own address: no header can change it):

- ``PORT`` (public) passes only paths under ``/twilio/``: the webhooks, the callbacks and the
  Media Streams socket, every one of them signed by Twilio.
- ``ADMIN_PORT`` (private) passes everything else: ``/metrics``, ``/healthz``, ``/readyz``, the
  read API, call control, and whatever route is added later, which is therefore private unless
  it is put under ``/twilio/``. It refuses ``/twilio/…``, so a proxy pointed at the wrong port
  fails at once and visibly instead of working until someone opens this port to the internet.

A refused path gets exactly what an unknown path gets (404 ``Not Found``; a WebSocket upgrade
closed before it is accepted), so a scan learns nothing, and is counted in
``switchboard_edge_listener_refused_total{listener}``.
"""

from __future__ import annotations

import socket
from typing import Literal

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketClose

from services.edge.runtime import RuntimeSlot
from services.edge.settings import EdgeSettings

__all__ = ["ADMIN", "PUBLIC", "TWILIO_PREFIX", "Listener", "Listeners", "bind", "bind_listeners"]

Listener = Literal["public", "admin"]
PUBLIC: Listener = "public"
ADMIN: Listener = "admin"
#: Every route Twilio calls lives under this prefix (services/edge/urls.py), and nothing else does.
TWILIO_PREFIX = "/twilio/"


class Listeners:
    """ASGI wrapper: the public port serves only ``/twilio/…``, the admin port all but that."""

    def __init__(self, app: ASGIApp, slot: RuntimeSlot, public_port: int, admin_port: int) -> None:
        if public_port == admin_port:
            raise ValueError(f"the public and admin ports must differ (both {public_port})")
        self.app = app
        self._slot = slot
        self._admin_port = admin_port

    def listener_of(self, scope: Scope) -> Listener:
        """Which listener a connection reached. Anything but the admin port counts as public:
        an address uvicorn cannot tell (``server`` None) gets the narrower face."""
        server = scope.get("server")
        return ADMIN if server is not None and server[1] == self._admin_port else PUBLIC

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):  # the lifespan: one for both listeners
            await self.app(scope, receive, send)
            return
        listener = self.listener_of(scope)
        twilio = scope["path"].startswith(TWILIO_PREFIX)
        if twilio == (listener == PUBLIC):
            await self.app(scope, receive, send)
            return
        runtime = self._slot.runtime
        if runtime is not None:
            runtime.metrics.listener_refused.labels(listener).inc()
        # What Starlette's router answers for a path it does not know.
        if scope["type"] == "http":
            await PlainTextResponse("Not Found", status_code=404)(scope, receive, send)
        else:
            await WebSocketClose()(scope, receive, send)


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port``, for uvicorn to listen on (as
    ``uvicorn.Config.bind_socket`` makes one: IPv6 when the host has a colon). Raises OSError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def bind_listeners(settings: EdgeSettings) -> list[socket.socket]:
    """The public socket (HOST, PORT), then the admin one (ADMIN_HOST, ADMIN_PORT). Raises
    OSError naming the variables of the one that cannot be bound."""
    sockets: list[socket.socket] = []
    for names, host, port in (
        ("HOST:PORT", settings.host, settings.port),
        ("ADMIN_HOST:ADMIN_PORT", settings.admin_bind_host, settings.admin_port),
    ):
        try:
            sockets.append(bind(host, port))
        except OSError as exc:
            for sock in sockets:
                sock.close()
            raise OSError(
                exc.errno, f"cannot listen on {names} {host}:{port}: {exc.strerror or exc}"
            ) from exc
    return sockets
