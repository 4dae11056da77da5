"""The routes Twilio calls about a call's progress (an outbound call's, a transfer's),
through the edge app: each checks Twilio's signature; status callbacks move the record on and
free the call's slot; the detection verdict and Twilio's recording land on the record; the
answer webhook finds the call's agent on its record (and records it when the call has none)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from shared.keys import CallField, CallState, Keys
from shared.messages import CallAnswered, CallStopped
from tests.support import twilio_frames as tf
from tests.support.edge_app import Edge, make_settings, running_edge, voice_params
from tests.support.waiting import eventually_sync

SID = tf.CALL_SID
OUR_NUMBER = "+15005550006"


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[Edge]:
    agents = tmp_path / "agents.yaml"
    recorded = {
        "name": "sales",
        "numbers": [OUR_NUMBER],
        "record": True,
        "recording_notice": "This call is recorded.",
    }
    agents.write_text(yaml.safe_dump({"agents": [recorded]}))
    with running_edge(make_settings(AGENTS_FILE=str(agents))) as running:
        yield running


def _placed(edge: Edge, state: CallState = CallState.QUEUED) -> None:
    edge.redis.hset(
        edge.keys.call(SID),
        mapping={
            CallField.STATE: state,
            CallField.DIRECTION: "outbound-api",
            CallField.AGENT: "sales",
            CallField.FROM: OUR_NUMBER,
        },
    )
    edge.redis.zadd(Keys("sb").outbound_active, {SID: 10**15})


def _status(status: str, **extra: str) -> dict[str, str]:
    return {"CallSid": SID, "AccountSid": tf.ACCOUNT_SID, "CallStatus": status, **extra}


@pytest.mark.parametrize(
    "path",
    [
        "/twilio/outbound/status",
        "/twilio/outbound/amd",
        "/twilio/recording/status",
        "/twilio/transfer/status",
        "/twilio/transfer/whisper",
    ],
)
def test_an_unsigned_callback_is_refused_and_changes_nothing(edge: Edge, path: str) -> None:
    _placed(edge)
    params = _status("no-answer") | {
        "AnsweredBy": "human",
        "RecordingSid": "RE1",
        "DialCallStatus": "no-answer",
    }
    assert edge.post(path, params).status_code == 403
    assert edge.post(path, params, signature="bm90IGEgc2lnbmF0dXJl").status_code == 403
    assert edge.record()[CallField.STATE] == CallState.QUEUED
    assert edge.inbound() == []
    refused = edge.metric(
        "switchboard_edge_rejected_requests_total", route=path, reason="bad_signature"
    )
    assert refused == 2


def test_status_callbacks_move_the_call_on_and_a_final_one_frees_its_slot(edge: Edge) -> None:
    _placed(edge)
    assert edge.post_signed("/twilio/outbound/status", _status("ringing")).status_code == 204
    assert edge.record()[CallField.STATE] == CallState.RINGING
    final = _status("failed", ErrorCode="31005", CallDuration="0")
    assert edge.post_signed("/twilio/outbound/status", final).status_code == 204
    record = edge.record()
    assert (record[CallField.STATE], record[CallField.END_REASON]) == ("failed", "failed")
    assert record[CallField.TWILIO_ERROR] == "31005"
    assert edge.inbound() == [CallStopped("failed")]  # the pre-warmed worker lets go
    assert edge.redis.zscore(Keys("sb").outbound_active, SID) is None
    assert edge.metric("switchboard_edge_outbound_call_status_total", status="failed") == 1


def test_the_verdict_and_the_recording_land_on_the_record(edge: Edge) -> None:
    _placed(edge, CallState.LIVE)
    amd = {"CallSid": SID, "AnsweredBy": "machine_end_beep", "MachineDetectionDuration": "7400"}
    assert edge.post_signed("/twilio/outbound/amd", amd).status_code == 204
    recording = {
        "CallSid": SID,
        "RecordingSid": "RE" + "a" * 32,
        "RecordingUrl": "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1",
        "RecordingStatus": "completed",
        "RecordingDuration": "12",
    }
    assert edge.post_signed("/twilio/recording/status", recording).status_code == 204

    def landed() -> bool:  # the edge pipelines these writes
        return edge.record().get(CallField.RECORDING_STATUS) == "completed"

    eventually_sync(landed)
    record = edge.record()
    assert (record[CallField.ANSWERED_BY], record[CallField.AMD_MS]) == ("machine_end_beep", "7400")
    assert record[CallField.RECORDING_SID] == recording["RecordingSid"]
    assert record[CallField.RECORDING_DURATION] == "12"
    assert edge.inbound() == [CallAnswered("machine_end_beep", 7400)]


def test_the_answer_of_a_placed_call_is_its_agents_with_the_recording_first(edge: Edge) -> None:
    _placed(edge, CallState.RINGING)
    params = {
        "CallSid": SID,
        "AccountSid": tf.ACCOUNT_SID,
        "From": OUR_NUMBER,
        "To": "+15005550101",
        "Direction": "outbound-api",
        "CallStatus": "in-progress",
    }
    response = edge.post_signed("/twilio/voice", params)
    assert response.status_code == 200
    verbs = [verb.tag for verb in ET.fromstring(response.text)]
    assert verbs == ["Say", "Start", "Connect", "Redirect"]
    # Answered before its record was written: served as the agent of the number it came from.
    other = params | {"CallSid": "CA" + "b" * 32}
    response = edge.post_signed("/twilio/voice", other)
    assert [verb.tag for verb in ET.fromstring(response.text)][:3] == ["Say", "Start", "Connect"]
    assert edge.record("CA" + "b" * 32)[CallField.AGENT] == "sales"
    # A call nobody here placed, from a number no agent has: hung up on.
    stranger = other | {"CallSid": "CA" + "c" * 32, "From": "+15005550999"}
    response = edge.post_signed("/twilio/voice", stranger)
    assert [verb.tag for verb in ET.fromstring(response.text)] == ["Hangup"]


def test_switchboards_own_recording_is_announced_too(tmp_path: Path) -> None:
    agents = tmp_path / "agents.yaml"
    agent = {"name": "support", "numbers": ["*"], "recording_notice": "We record calls."}
    agents.write_text(yaml.safe_dump({"agents": [agent]}))
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    for directory, verbs in ((None, ["Connect", "Redirect"]), (recordings, None)):
        env = {"AGENTS_FILE": str(agents)}
        if directory is not None:
            env["RECORDINGS_DIR"] = str(directory)
        with running_edge(make_settings(**env)) as edge:
            response = edge.post_signed("/twilio/voice", voice_params())
            document = ET.fromstring(response.text)
            # Switchboard records (RECORDINGS_DIR): the notice, but no Twilio recording.
            expected = verbs or ["Say", "Connect", "Redirect"]
            assert [verb.tag for verb in document] == expected
            if verbs is None:
                assert document[0].text == "We record calls."
