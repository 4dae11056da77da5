"""An agent that records: its notice, then ``<Start><Recording>`` before ``<Connect>``. The
same elements as the twilio package's VoiceResponse builds, and read without a problem by the
call simulator's strict TwiML reader."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from twilio.twiml.voice_response import VoiceResponse

from services.call_sim.twiml import parse_twiml
from services.edge import twiml
from services.edge.urls import PublicUrls

URLS = PublicUrls("https://edge.example.com")
NOTICE = "This call is recorded & kept for 30 days."


def _document() -> str:
    before = twiml.say_verb(NOTICE) + twiml.start_recording(URLS.recording_status)
    return twiml.connect_stream(URLS.media, "tok", URLS.resume, URLS.status, before)


def test_the_notice_and_the_recording_come_before_the_stream() -> None:
    root = ET.fromstring(_document().encode())
    assert [child.tag for child in root] == ["Say", "Start", "Connect", "Redirect"]
    assert root[0].text == NOTICE
    (recording,) = root[1]
    assert recording.tag == "Recording"
    theirs = VoiceResponse()
    start = theirs.start()
    start.recording(
        channels="dual",
        track="both",
        recording_status_callback=URLS.recording_status,
        recording_status_callback_method="POST",
        recording_status_callback_event="in-progress completed absent",
    )
    (their_start,) = ET.fromstring(str(theirs).encode())
    assert recording.attrib == their_start[0].attrib


def test_the_call_simulator_reads_it_without_a_problem() -> None:
    document = parse_twiml(_document(), URLS.voice)
    assert document.problems == ()
