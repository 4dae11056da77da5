"""The transfer's TwiML (twiml.dial, twiml.say) and its URLs: exact documents, and the same
elements and attributes as the twilio package's own VoiceResponse builds."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlsplit

import pytest
from twilio.twiml.voice_response import VoiceResponse

from services.edge import twiml
from services.edge.urls import PublicUrls

HEAD = '<?xml version="1.0" encoding="UTF-8"?>'
URLS = PublicUrls("https://edge.example.com")
ACTION = "https://edge.example.com/twilio/transfer/status"
CALLER_ID = "+15005550001"


def _parse(document: str) -> ET.Element:
    assert document.startswith(HEAD)
    root = ET.fromstring(document.encode("utf-8"))
    assert root.tag == "Response"
    return root


def _shape(element: ET.Element) -> tuple[object, ...]:
    """An element as Twilio reads it: tag, attributes, text, children."""
    return (
        element.tag,
        element.attrib,
        (element.text or "").strip(),
        [_shape(child) for child in element],
    )


def _twilio_dial(
    noun: str, address: str, action: str, caller_id: str, timeout: int, whisper: str | None
) -> str:
    response = VoiceResponse()
    dial = response.dial(action=action, method="POST", caller_id=caller_id, timeout=timeout)
    extra = {} if whisper is None else {"url": whisper, "method": "POST"}
    if noun == "Sip":
        dial.sip(address, **extra)
    else:
        dial.number(address, **extra)
    return str(response)


# --- exact documents --------------------------------------------------------------------------


def test_a_cold_transfer_to_a_number() -> None:
    assert twiml.dial("+15005550007", ACTION, CALLER_ID, 30, None) == (
        f'{HEAD}<Response><Dial action="https://edge.example.com/twilio/transfer/status" '
        'method="POST" callerId="+15005550001" timeout="30">'
        "<Number>+15005550007</Number></Dial></Response>"
    )


def test_a_cold_transfer_to_a_sip_uri() -> None:
    assert twiml.dial("sip:sales@pbx.example.com;transport=tls", ACTION, CALLER_ID, 45, None) == (
        f'{HEAD}<Response><Dial action="https://edge.example.com/twilio/transfer/status" '
        'method="POST" callerId="+15005550001" timeout="45">'
        "<Sip>sip:sales@pbx.example.com;transport=tls</Sip></Dial></Response>"
    )


def test_no_caller_id_known_leaves_the_attribute_out() -> None:
    # Twilio then shows the person the caller's own id; an empty callerId names no number.
    assert twiml.dial("+15005550007", ACTION, "", 30, None) == (
        f'{HEAD}<Response><Dial action="https://edge.example.com/twilio/transfer/status" '
        'method="POST" timeout="30"><Number>+15005550007</Number></Dial></Response>'
    )


def test_a_sips_uri_is_a_sip_noun_too() -> None:
    root = _parse(twiml.dial("sips:desk@pbx.example.com", ACTION, CALLER_ID, 30, None))
    noun = root.find("Dial/Sip")
    assert noun is not None and noun.text == "sips:desk@pbx.example.com"
    assert root.find("Dial/Number") is None


def test_a_warm_transfer_names_the_whisper_url_with_its_query_escaped() -> None:
    whisper = URLS.whisper("CA0123") + "&lang=en"
    assert whisper == "https://edge.example.com/twilio/transfer/whisper?call=CA0123&lang=en"
    assert twiml.dial("+15005550007", ACTION, CALLER_ID, 30, whisper) == (
        f'{HEAD}<Response><Dial action="https://edge.example.com/twilio/transfer/status" '
        'method="POST" callerId="+15005550001" timeout="30">'
        '<Number url="https://edge.example.com/twilio/transfer/whisper?call=CA0123&amp;lang=en" '
        'method="POST">+15005550007</Number></Dial></Response>'
    )


def test_a_warm_transfer_to_a_sip_uri() -> None:
    whisper = URLS.whisper("CA0123")
    assert twiml.dial("sip:sales@pbx.example.com", ACTION, CALLER_ID, 30, whisper) == (
        f'{HEAD}<Response><Dial action="https://edge.example.com/twilio/transfer/status" '
        'method="POST" callerId="+15005550001" timeout="30">'
        '<Sip url="https://edge.example.com/twilio/transfer/whisper?call=CA0123" '
        'method="POST">sip:sales@pbx.example.com</Sip></Dial></Response>'
    )


def test_addresses_and_attributes_are_escaped() -> None:
    address = "sip:o'neil&co@pbx.example.com;x=a&b"
    action = 'https://edge.example.com/status?a=1&b="2"'
    document = twiml.dial(address, action, CALLER_ID, 30, "https://w.example/?a=<1>&b='2'")
    assert "<Sip " in document
    assert ">sip:o'neil&amp;co@pbx.example.com;x=a&amp;b</Sip>" in document
    # quoteattr: single quotes around a value holding only double quotes.
    assert "action='https://edge.example.com/status?a=1&amp;b=\"2\"'" in document
    assert "url=\"https://w.example/?a=&lt;1&gt;&amp;b='2'\"" in document
    root = _parse(document)
    dial = root.find("Dial")
    noun = root.find("Dial/Sip")
    assert dial is not None and noun is not None
    assert dial.attrib["action"] == action
    assert noun.text == address
    assert noun.attrib["url"] == "https://w.example/?a=<1>&b='2'"


@pytest.mark.parametrize("text", ["Ada wants a refund.", 'Tom & Jerry <b>"quoted"</b> ünï 🙂'])
def test_say_reads_the_text_and_ends(text: str) -> None:
    document = twiml.say(text)
    root = _parse(document)
    assert [(child.tag, child.attrib, child.text) for child in root] == [("Say", {}, text)]


def test_say_exact_document() -> None:
    assert twiml.say("Ada & Bob want a refund <now>.") == (
        f"{HEAD}<Response><Say>Ada &amp; Bob want a refund &lt;now&gt;.</Say></Response>"
    )


# --- valid TwiML per the twilio package -------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "noun"),
    [
        ("+15005550007", "Number"),
        ("sip:sales@pbx.example.com", "Sip"),
        ("sips:desk@pbx.example.com:5061;transport=tls", "Sip"),
        ("sip:o'neil&co@pbx.example.com", "Sip"),
    ],
)
@pytest.mark.parametrize(
    "whisper",
    [None, "https://edge.example.com/twilio/transfer/whisper?call=CA0123&lang=en"],
)
def test_dial_matches_what_the_twilio_package_builds(
    address: str, noun: str, whisper: str | None
) -> None:
    action = "https://edge.example.com/twilio/transfer/status?x=1&y=2"
    ours = _parse(twiml.dial(address, action, CALLER_ID, 25, whisper))
    theirs = _parse(_twilio_dial(noun, address, action, CALLER_ID, 25, whisper))
    assert _shape(ours) == _shape(theirs)
    # And it is what was asked for.
    dial = ours.find("Dial")
    assert dial is not None
    assert dial.attrib == {
        "action": action,
        "method": "POST",
        "callerId": CALLER_ID,
        "timeout": "25",
    }
    (element,) = list(dial)
    assert (element.tag, element.text) == (noun, address)
    expected = {} if whisper is None else {"url": whisper, "method": "POST"}
    assert element.attrib == expected


@pytest.mark.parametrize("text", ["The caller is Ada.", "a&b <c> \"d\" 'e'"])
def test_say_matches_what_the_twilio_package_builds(text: str) -> None:
    theirs = VoiceResponse()
    theirs.say(text)
    assert _shape(_parse(twiml.say(text))) == _shape(_parse(str(theirs)))


# --- the transfer's URLs ----------------------------------------------------------------------


def test_the_transfer_status_url() -> None:
    assert URLS.transfer_status == "https://edge.example.com/twilio/transfer/status"
    under = PublicUrls("https://example.com/switchboard")
    assert under.transfer_status == "https://example.com/switchboard/twilio/transfer/status"


def test_the_whisper_url_names_the_callers_call() -> None:
    assert URLS.whisper("CA0123456789abcdef0123456789abcdef") == (
        "https://edge.example.com/twilio/transfer/whisper?call=CA0123456789abcdef0123456789abcdef"
    )
    under = PublicUrls("https://example.com/switchboard")
    assert (
        under.whisper("CA1") == "https://example.com/switchboard/twilio/transfer/whisper?call=CA1"
    )


def test_the_whisper_url_encodes_the_call_sid() -> None:
    odd = "CA 1&x=2/é"
    url = URLS.whisper(odd)
    assert url == "https://edge.example.com/twilio/transfer/whisper?call=CA+1%26x%3D2%2F%C3%A9"
    parts = urlsplit(url)
    assert parts.path == "/twilio/transfer/whisper"
    assert parse_qs(parts.query) == {"call": [odd]}
