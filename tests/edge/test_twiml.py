"""The TwiML the edge answers with, parsed back the way Twilio would read it."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from services.edge import twiml
from services.edge.urls import PublicUrls

URLS = PublicUrls("https://edge.example.com")


def _parse(document: str) -> ET.Element:
    assert document.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(document.encode("utf-8"))
    assert root.tag == "Response"
    return root


def test_connect_stream_document() -> None:
    root = _parse(twiml.connect_stream(URLS.media, "v1.1.mac", URLS.resume, URLS.status))
    assert [child.tag for child in root] == ["Connect", "Redirect"]
    connect, redirect = root
    assert [child.tag for child in connect] == ["Stream"]
    stream = connect[0]
    assert stream.attrib == {
        "url": "wss://edge.example.com/twilio/media",
        "statusCallback": "https://edge.example.com/twilio/stream-status",
    }
    assert "?" not in stream.attrib["url"]  # a query string on the stream URL breaks it
    params = list(stream)
    assert [p.tag for p in params] == ["Parameter"]
    assert params[0].attrib == {"name": "token", "value": "v1.1.mac"}
    assert redirect.attrib == {"method": "POST"}
    assert redirect.text == "https://edge.example.com/twilio/voice/resume"


@pytest.mark.parametrize(
    "odd",
    ['a"b', "a'b", "a<b>c", "a&b", "a&amp;b", "line\nbreak\ttab", "ünï🙂", "]]>"],
)
def test_values_are_escaped_and_come_back_unchanged(odd: str) -> None:
    document = twiml.connect_stream(
        f"wss://edge.example.com/{odd}", odd, f"https://edge.example.com/r?x={odd}", odd
    )
    root = _parse(document)
    stream = root.find("Connect/Stream")
    assert stream is not None
    assert stream.attrib["url"] == f"wss://edge.example.com/{odd}"
    assert stream.attrib["statusCallback"] == odd
    parameter = stream.find("Parameter")
    assert parameter is not None
    assert parameter.attrib["value"] == odd
    redirect = root.find("Redirect")
    assert redirect is not None
    assert redirect.text == f"https://edge.example.com/r?x={odd}"


def test_hangup() -> None:
    root = _parse(twiml.hangup())
    assert [(child.tag, child.attrib, child.text) for child in root] == [("Hangup", {}, None)]


@pytest.mark.parametrize("text", ["Sorry, we cannot take your call.", "<b>&\"'</b> ünï"])
def test_say_and_hangup(text: str) -> None:
    root = _parse(twiml.say_and_hangup(text))
    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert root[0].text == text
