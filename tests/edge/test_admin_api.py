"""The read API (GET /calls, GET /calls/{sid}) through Starlette's TestClient on fakeredis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.keys import RECENT_CALLS_MAX, CallField
from shared.records import Turn, encode_turn
from tests.support import twilio_frames as tf
from tests.support.edge_app import Edge, make_settings, running_edge

TOKEN = "admin-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
OTHER_SID = "CA" + "0" * 32


@pytest.fixture
def admin_edge() -> Iterator[Edge]:
    with running_edge(make_settings(ADMIN_TOKEN=TOKEN)) as running:
        yield running


def test_read_api_is_off_without_admin_token(edge: Edge) -> None:
    for path in ("/calls", f"/calls/{tf.CALL_SID}"):
        response = edge.client.get(path, headers=AUTH)
        assert response.status_code == 404
        assert response.json() == {"error": "not found"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-0123456789abcdef"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Authorization": f"Bearer {TOKEN}x"},
    ],
)
def test_read_api_refuses_without_the_token(admin_edge: Edge, headers: dict[str, str]) -> None:
    for path in ("/calls", f"/calls/{tf.CALL_SID}"):
        response = admin_edge.client.get(path, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert (
        admin_edge.metric(
            "switchboard_edge_rejected_requests_total", route="admin", reason="bad_token"
        )
        == 2
    )


def test_calls_lists_recent_calls_newest_first_with_live_flag(admin_edge: Edge) -> None:
    admin_edge.answer(tf.CALL_SID)
    admin_edge.answer(OTHER_SID)
    admin_edge.redis.hset(
        admin_edge.keys.call(tf.CALL_SID),
        mapping={"state": "ended", "ended_by": "caller", "duration_ms": "4200", "in_cursor": "1-0"},
    )
    admin_edge.redis.zadd(admin_edge.keys.recent_calls, {"CA" + "f" * 32: 1})  # record expired
    response = admin_edge.client.get("/calls", headers=AUTH)
    assert response.status_code == 200
    body = response.json()
    sids = [call["call_sid"] for call in body["calls"]]
    assert sorted(sids) == sorted([tf.CALL_SID, OTHER_SID])
    assert body["live"] == 1
    by_sid = {call["call_sid"]: call for call in body["calls"]}
    ended = by_sid[tf.CALL_SID]
    assert ended["live"] is False
    assert ended["ended_by"] == "caller"
    assert ended["duration_ms"] == 4200
    assert isinstance(ended["created_ms"], int)
    assert ended["from"] == "+16175551212"
    assert "in_cursor" not in ended
    assert by_sid[OTHER_SID]["live"] is True
    limited = admin_edge.client.get("/calls?limit=1", headers=AUTH).json()["calls"]
    assert len(limited) == 1
    for bad in ("0", "x", str(RECENT_CALLS_MAX + 1)):
        assert admin_edge.client.get(f"/calls?limit={bad}", headers=AUTH).status_code == 400


def test_recent_calls_index_is_bounded(admin_edge: Edge) -> None:
    admin_edge.answer(tf.CALL_SID)
    key = admin_edge.keys.recent_calls
    assert admin_edge.redis.zcard(key) == 1
    assert admin_edge.redis.zscore(key, tf.CALL_SID) > 0


def test_call_shows_record_and_transcript(admin_edge: Edge) -> None:
    admin_edge.answer(tf.CALL_SID)
    keys, redis = admin_edge.keys, admin_edge.redis
    redis.hset(
        keys.call(tf.CALL_SID),
        mapping={
            CallField.TOKENS_OUTPUT_AUDIO.value: "120",
            CallField.BARGE_INS.value: "2",
            CallField.INPUT_FORMAT.value: "audio/pcmu",
        },
    )
    redis.rpush(
        keys.turns(tf.CALL_SID),
        encode_turn(Turn("user", "When does my order arrive?", 1000)),
        b"not json",
        encode_turn(Turn("assistant", "On Thursday.", 2000)),
    )
    response = admin_edge.client.get(f"/calls/{tf.CALL_SID}", headers=AUTH)
    assert response.status_code == 200
    body = response.json()
    assert body["call"]["call_sid"] == tf.CALL_SID
    assert body["call"]["tokens_output_audio"] == 120
    assert body["call"]["barge_ins"] == 2
    assert body["call"]["input_format"] == "audio/pcmu"
    assert body["call"]["state"] == "dispatched"
    assert body["turns"] == [
        {"role": "user", "text": "When does my order arrive?", "at_ms": 1000},
        {"role": "assistant", "text": "On Thursday.", "at_ms": 2000},
    ]


def test_unknown_or_malformed_call_is_404(admin_edge: Edge) -> None:
    assert admin_edge.client.get(f"/calls/{OTHER_SID}", headers=AUTH).status_code == 404
    assert admin_edge.client.get("/calls/not-a-sid", headers=AUTH).status_code == 404
