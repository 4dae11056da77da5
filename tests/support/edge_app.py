"""An edge app on fakeredis, driven through Starlette's TestClient: the ``Edge`` handle, its
settings, and the helpers that speak Media Streams to it (the frames themselves:
``tests.support.twilio_frames``)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import fakeredis
import fakeredis.aioredis
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient, WebSocketTestSession

from services.edge.app import create_app
from services.edge.runtime import EdgeRuntime, RuntimeSlot
from services.edge.settings import EdgeSettings
from services.edge.signature import compute_signature
from shared.keys import Keys
from shared.messages import ENTRY_FIELD, Message, decode, encode
from tests.support import twilio_frames as tf
from tests.support.waiting import eventually_sync

AUTH_TOKEN = "test-auth-token-0123456789abcdef"
PUBLIC_URL = "https://edge.example.com"
MEDIA_URL = "wss://edge.example.com/twilio/media"
EDGE_ID = "edge-test"
TIMEOUT_S = 3.0


def make_settings(**env: str) -> EdgeSettings:
    values = {
        "PUBLIC_URL": PUBLIC_URL,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "EDGE_ID": EDGE_ID,
        "REDIS_URL": "redis://fake:6379/0",
    }
    values.update(env)
    return EdgeSettings.from_env(values)


class Edge:
    """The app, its Redis (seen from the test through a sync client on the same server)."""

    def __init__(
        self,
        client: TestClient,
        server: fakeredis.FakeServer,
        registry: CollectorRegistry,
        slot: RuntimeSlot,
        public_url: str = PUBLIC_URL,
    ) -> None:
        self.client = client
        self.slot = slot
        self.server = server
        self.public_url = public_url
        redis = fakeredis.FakeRedis(server=server)
        self.redis: Any = redis  # redis-py's sync types are a union of bytes and str
        self.registry = registry
        self.keys = Keys("sb")

    @property
    def runtime(self) -> EdgeRuntime:
        runtime = self.slot.runtime
        assert runtime is not None, "the edge's lifespan is not running"
        return runtime

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    # --- webhooks ---------------------------------------------------------------------------

    def sign(self, path: str, params: dict[str, str], token: str = AUTH_TOKEN) -> str:
        return compute_signature(token, self.public_url + path, params.items())

    def post(
        self, path: str, params: dict[str, str], signature: str | None = None, **kwargs: Any
    ) -> Any:
        headers = {} if signature is None else {"X-Twilio-Signature": signature}
        return self.client.post(path, data=params, headers=headers, **kwargs)

    def post_signed(self, path: str, params: dict[str, str]) -> Any:
        return self.post(path, params, self.sign(path, params))

    def answer(self, call_sid: str = tf.CALL_SID) -> str:
        """POST the voice webhook for a new call and return the stream token from its TwiML."""
        response = self.post_signed("/twilio/voice", voice_params(call_sid))
        assert response.status_code == 200, response.text
        return stream_token(response.text)

    # --- redis ------------------------------------------------------------------------------

    def record(self, call_sid: str = tf.CALL_SID) -> dict[str, str]:
        raw = self.redis.hgetall(self.keys.call(call_sid))
        return {k.decode(): v.decode() for k, v in raw.items()}

    def entries(self, stream: str) -> list[Message]:
        return [decode(fields[ENTRY_FIELD]) for _, fields in self.redis.xrange(stream)]

    def inbound(self, call_sid: str = tf.CALL_SID) -> list[Message]:
        return self.entries(self.keys.inbound(call_sid))

    def publish(self, message: Message, call_sid: str = tf.CALL_SID) -> None:
        """What a worker does: append to the call's outbound stream."""
        self.redis.xadd(self.keys.outbound(call_sid), {ENTRY_FIELD: encode(message)})

    # --- media stream -----------------------------------------------------------------------

    @contextmanager
    def stream(self, signature: str | None = "valid") -> Iterator[WebSocketTestSession]:
        """A Media Streams socket, opened the way Twilio opens it (signed ``wss`` URL)."""
        if signature == "valid":
            signature = compute_signature(AUTH_TOKEN, MEDIA_URL)
        headers = {} if signature is None else {"x-twilio-signature": signature}
        with self.client.websocket_connect("/twilio/media", headers=headers) as ws:
            yield ws

    @contextmanager
    def call(self, token: str) -> Iterator[WebSocketTestSession]:
        """A signed socket that has sent ``connected`` and ``start`` and is attached."""
        with self.stream() as ws:
            send(ws, tf.connected())
            send(ws, tf.start(token))
            # The registry is the last step of attaching (the record is live before it).
            eventually_sync(lambda: tf.CALL_SID in self.runtime.calls.sids())
            yield ws


def send(ws: WebSocketTestSession, frame: dict[str, Any]) -> None:
    ws.send_text(json.dumps(frame))


def receive(ws: WebSocketTestSession, timeout: float = TIMEOUT_S) -> dict[str, Any]:
    """The next message the edge sent, or an AssertionError instead of hanging the test."""

    async def get() -> dict[str, Any]:
        with anyio.fail_after(timeout):
            return dict(await ws._send_rx.receive())

    try:
        return ws.portal.call(get)
    except TimeoutError:
        raise AssertionError(f"the edge sent nothing within {timeout}s") from None


def receive_json(ws: WebSocketTestSession) -> dict[str, Any]:
    message = receive(ws)
    assert message["type"] == "websocket.send", message
    parsed: dict[str, Any] = json.loads(message["text"])
    return parsed


def voice_params(call_sid: str = tf.CALL_SID) -> dict[str, str]:
    return {
        "CallSid": call_sid,
        "AccountSid": tf.ACCOUNT_SID,
        "From": "+16175551212",
        "To": "+18005551212",
        "CallStatus": "ringing",
        "ApiVersion": "2010-04-01",
        "Direction": "inbound",
    }


def stream_token(document: str) -> str:
    parameter = ET.fromstring(document).find("Connect/Stream/Parameter[@name='token']")
    assert parameter is not None, document
    return parameter.attrib["value"]


@contextmanager
def running_edge(settings: EdgeSettings) -> Iterator[Edge]:
    server = fakeredis.FakeServer()
    registry = CollectorRegistry()
    slot = RuntimeSlot()
    app = create_app(
        settings, redis=fakeredis.aioredis.FakeRedis(server=server), registry=registry, slot=slot
    )
    with TestClient(app) as client:
        edge = Edge(client, server, registry, slot, settings.public_url)
        eventually_sync(lambda: edge.runtime.ready)
        yield edge
