"""How a transfer ends, through the edge app's ``<Dial action>`` route: a person reached ends
the call for Switchboard; a person not reached brings the caller back to the AI once, however
often Twilio repeats the request; a caller who hung up meanwhile is not brought back; the
whisper reads the person the model's summary."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from shared.keys import CallField, CallState
from shared.messages import CallDispatch
from shared.records import decode_turn
from tests.support import twilio_frames as tf
from tests.support.edge_app import Edge, make_settings, running_edge
from tests.support.waiting import eventually_sync

SID = tf.CALL_SID
STATUS_PATH = "/twilio/transfer/status"


@pytest.fixture
def edge() -> Iterator[Edge]:
    with running_edge(make_settings()) as running:
        yield running


def _transferred(edge: Edge, summary: str = "Ada wants a refund for order 42.") -> None:
    """A call the worker has handed over: the resume route is dialling the person."""
    edge.redis.hset(
        edge.keys.call(SID),
        mapping={
            CallField.STATE: CallState.TRANSFERRED,
            CallField.TRANSFER_TARGET: "billing",
            CallField.TRANSFERRED_TO: "+15005550007",
            CallField.TRANSFER_SUMMARY: summary,
            CallField.TRANSFER_WARM: 1,
            CallField.END_REASON: "transfer",
        },
    )


def _dial_ended(edge: Edge, dial_status: str, call_status: str = "in-progress") -> list[str]:
    params = {
        "CallSid": SID,
        "AccountSid": tf.ACCOUNT_SID,
        "CallStatus": call_status,
        "DialCallStatus": dial_status,
    }
    response = edge.post_signed(STATUS_PATH, params)
    assert response.status_code == 200, response.text
    return [verb.tag for verb in ET.fromstring(response.text)]


def test_a_person_reached_ends_the_call_for_switchboard(edge: Edge) -> None:
    _transferred(edge)
    assert _dial_ended(edge, "completed") == ["Hangup"]
    eventually_sync(lambda: edge.record()[CallField.STATE] == CallState.ENDED)
    assert edge.record()[CallField.TRANSFER_STATUS] == "completed"
    assert edge.metric("switchboard_edge_transfers_total", outcome="completed") == 1


def test_a_person_not_reached_brings_the_caller_back_to_the_ai_once(edge: Edge) -> None:
    _transferred(edge)
    assert _dial_ended(edge, "no-answer") == ["Connect", "Redirect"]
    record = edge.record()
    assert record[CallField.STATE] == CallState.DISPATCHED
    assert record[CallField.TRANSFER_STATUS] == "no-answer"
    assert CallField.END_REASON not in record  # live again: the call has not ended
    # Twilio repeats the action request (a lost answer): the same stream again, no second notice.
    assert _dial_ended(edge, "no-answer") == ["Connect", "Redirect"]
    turns = [decode_turn(raw) for raw in edge.redis.lrange(edge.keys.turns(SID), 0, -1)]
    notices = [turn for turn in turns if turn is not None and turn.role == "system"]
    assert len(notices) == 1 and "billing" in notices[0].text
    # Put in line for a worker once: the new session hears the turns and the notice.
    (dispatch,) = edge.entries(edge.keys.dispatch)
    assert isinstance(dispatch, CallDispatch)
    assert (dispatch.call_sid, dispatch.reason) == (SID, CallDispatch.TRANSFER_FAILED)
    assert edge.metric("switchboard_edge_transfers_total", outcome="no-answer") == 1


def test_a_caller_who_hung_up_during_the_dial_is_not_brought_back(edge: Edge) -> None:
    _transferred(edge)
    assert _dial_ended(edge, "no-answer", call_status="completed") == ["Hangup"]
    eventually_sync(lambda: edge.record()[CallField.STATE] == CallState.ENDED)
    assert edge.metric("switchboard_edge_transfers_total", outcome="caller_left") == 1


def test_an_action_request_for_a_call_that_is_over_hangs_up(edge: Edge) -> None:
    _transferred(edge)
    edge.redis.hset(edge.keys.call(SID), CallField.STATE, CallState.ENDED)
    assert _dial_ended(edge, "no-answer") == ["Hangup"]
    assert edge.record()[CallField.STATE] == CallState.ENDED


def test_the_whisper_reads_the_person_the_summary(edge: Edge) -> None:
    _transferred(edge, summary='Ada & Bob want a "refund".')
    path = f"/twilio/transfer/whisper?call={SID}"
    response = edge.post_signed(path, {"CallSid": "CA" + "f" * 32, "AccountSid": tf.ACCOUNT_SID})
    assert response.status_code == 200, response.text
    (say,) = ET.fromstring(response.text)
    assert say.tag == "Say"
    assert say.text == 'Transferred call from the assistant. Ada & Bob want a "refund".'
