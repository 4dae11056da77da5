"""The edge's worker watch: one alive-key check per worker serving its calls, and what happens to
the calls of a worker whose key is gone (lease revoked, dispatched again at once). Also the
edge's /livez and its test-only loop blocker."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from functools import partial
from typing import Any

import pytest
from starlette.testclient import WebSocketTestSession

from services.edge import runtime as runtime_module
from shared.keys import CallField
from shared.leases import REVOKED_PREFIX, workers_alive
from shared.messages import CallDispatch
from tests.support import twilio_frames as tf
from tests.support.edge_app import Edge, make_settings, receive, running_edge, send
from tests.support.waiting import eventually_sync

SIDS = ["CA" + str(i) * 32 for i in (1, 2, 3)]
HOLDERS = {SIDS[0]: "w1", SIDS[1]: "w1", SIDS[2]: "w2"}


@pytest.fixture
def edge() -> Iterator[Edge]:
    settings = make_settings(LEASE_CHECK_INTERVAL_MS="100", WORKER_CHECK_INTERVAL_MS="50")
    with running_edge(settings) as running:
        yield running


@contextmanager
def attached(edge: Edge, sids: Sequence[str]) -> Iterator[list[WebSocketTestSession]]:
    """A live stream on ``edge`` for each call (answered first), stopped on the way out."""
    with ExitStack() as stack:
        sockets = []
        for index, sid in enumerate(sids):
            token = edge.answer(sid)
            ws = stack.enter_context(edge.stream())
            send(ws, tf.connected())
            send(ws, tf.start(token, call_sid=sid, stream_sid=f"MZ{index:032d}"))
            eventually_sync(partial(is_live, edge, sid))
            sockets.append(ws)
        yield sockets
        for index, ws in enumerate(sockets):
            send(ws, tf.stop(stream_sid=f"MZ{index:032d}"))
            receive(ws)


def is_live(edge: Edge, sid: str) -> bool:
    return edge.record(sid).get(CallField.STATE) == "live"


def hold(edge: Edge, sid: str, worker: str) -> None:
    """What a worker claiming ``sid`` leaves in Redis: its lease, its alive key, the record."""
    edge.redis.set(edge.keys.lease(sid), worker, px=60_000)
    edge.redis.set(edge.keys.alive(worker), "1", px=60_000)
    edge.redis.hset(edge.keys.call(sid), CallField.WORKER_ID, worker)


def redispatched(edge: Edge) -> list[str]:
    entries = edge.entries(edge.keys.dispatch)
    return [e.call_sid for e in entries if isinstance(e, CallDispatch) and e.reason == "lease-lost"]


def worker_of(edge: Edge, sid: str) -> str | None:
    call = edge.runtime.calls.get(sid)
    return None if call is None else call.worker


def test_calls_of_a_worker_whose_alive_key_is_gone_move_at_once(
    edge: Edge, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[list[str]] = []

    async def spy(client: Any, keys: Sequence[str]) -> list[bool]:
        checked.append(list(keys))
        return await workers_alive(client, keys)

    monkeypatch.setattr(runtime_module, "workers_alive", spy)
    for sid, worker in HOLDERS.items():
        hold(edge, sid, worker)
    with attached(edge, SIDS):
        eventually_sync(lambda: all(worker_of(edge, s) == w for s, w in HOLDERS.items()))
        checked.clear()
        eventually_sync(lambda: len(checked) >= 3)
        # Three calls, two workers: two EXISTS per check, in one round trip.
        assert all(
            sorted(keys) == [edge.keys.alive("w1"), edge.keys.alive("w2")] for keys in checked
        )
        assert redispatched(edge) == []

        edge.redis.delete(edge.keys.alive("w1"))  # w1 died, froze, or its loop is stuck
        eventually_sync(lambda: sorted(redispatched(edge)) == sorted(SIDS[:2]))
        for sid in SIDS[:2]:  # fenced off from w1 long before its lease's own TTL
            assert edge.redis.get(edge.keys.lease(sid)) == (REVOKED_PREFIX + "w1").encode()
        assert edge.redis.get(edge.keys.lease(SIDS[2])) == b"w2"
        assert edge.metric("switchboard_edge_calls_redispatched_total") == 2

        hold(edge, SIDS[0], "w3")  # the next worker claims one of them
        eventually_sync(lambda: worker_of(edge, SIDS[0]) == "w3")
        checked.clear()
        eventually_sync(lambda: len(checked) >= 3)
        assert sorted(redispatched(edge)) == sorted(SIDS[:2])  # each moved once
        assert worker_of(edge, SIDS[1]) is None  # still waiting for a worker


def test_a_call_another_worker_took_meanwhile_is_left_alone(edge: Edge) -> None:
    hold(edge, SIDS[0], "w1")
    with attached(edge, SIDS[:1]):
        eventually_sync(lambda: worker_of(edge, SIDS[0]) == "w1")
        # w2 took the call (w1 handed it off) before this edge's lease check saw it, and w1
        # then stopped: the watch only revokes a lease w1 still holds.
        edge.redis.set(edge.keys.lease(SIDS[0]), "w2", px=60_000)
        edge.redis.set(edge.keys.alive("w2"), "1", px=60_000)
        edge.redis.delete(edge.keys.alive("w1"))
        eventually_sync(lambda: worker_of(edge, SIDS[0]) == "w2")
        assert edge.redis.get(edge.keys.lease(SIDS[0])) == b"w2"
        assert redispatched(edge) == []


def test_after_redis_failed_a_missing_alive_key_waits_for_its_worker(edge: Edge) -> None:
    hold(edge, SIDS[0], "w1")
    with attached(edge, SIDS[:1]):
        eventually_sync(lambda: worker_of(edge, SIDS[0]) == "w1")
        edge.server.connected = False  # the watch's checks fail
        time.sleep(0.3)
        edge.server.connected = True
        edge.redis.delete(edge.keys.alive("w1"))  # Redis came back without the worker's key
        time.sleep(0.5)
        assert redispatched(edge) == []  # within REDIS_BACK_GRACE_S: the worker may set it
        # It does not: the worker is gone, and its call moves.
        eventually_sync(lambda: redispatched(edge) == [SIDS[0]], 3)


def test_a_stream_attaching_to_a_call_whose_lease_was_revoked_dispatches_it(edge: Edge) -> None:
    hold(edge, SIDS[0], "w1")
    with attached(edge, SIDS[:1]):
        pass
    assert redispatched(edge) == []  # its worker holds it
    edge.redis.hset(edge.keys.call(SIDS[1]), CallField.WORKER_ID, "w1")
    edge.redis.set(edge.keys.lease(SIDS[1]), REVOKED_PREFIX + "w1", px=60_000)
    with attached(edge, SIDS[1:2]):
        eventually_sync(lambda: redispatched(edge) == [SIDS[1]])


def test_livez_answers_from_the_loop_and_the_test_hook_is_off_by_default(edge: Edge) -> None:
    assert edge.client.get("/livez").json() == {"status": "ok"}
    assert edge.client.post("/test/block-loop?seconds=1").status_code == 404
    edge.runtime.broken = "lease-watch stopped: boom"  # a background loop died: restart
    response = edge.client.get("/livez")
    assert response.status_code == 503 and "lease-watch" in response.json()["reason"]
    edge.runtime.broken = None


def test_the_test_hook_blocks_the_loop_after_answering() -> None:
    with running_edge(make_settings(SWITCHBOARD_TEST_HOOKS="true")) as edge:
        assert edge.client.post("/test/block-loop?seconds=0").status_code == 400
        response = edge.client.post("/test/block-loop?seconds=0.2")
        assert response.status_code == 202
        assert edge.client.get("/livez").status_code == 200
