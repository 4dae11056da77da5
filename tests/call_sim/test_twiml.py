"""TwiML parsing, including the documents the edge itself renders."""

from __future__ import annotations

import pytest

from services.call_sim.twiml import (
    Connect,
    Hangup,
    Pause,
    Redirect,
    Reject,
    Say,
    StartStream,
    TwimlError,
    UnknownVerb,
    parse_twiml,
)
from services.edge import twiml as edge_twiml

BASE = "https://edge.example.com"


def test_edge_connect_stream_document() -> None:
    text = edge_twiml.connect_stream(
        "wss://edge.example.com/twilio/media",
        'tok"en<&>',
        f"{BASE}/twilio/voice/resume",
        f"{BASE}/twilio/stream-status",
    )
    document = parse_twiml(text, f"{BASE}/twilio/voice")
    assert document.problems == ()
    connect, redirect = document.verbs
    assert isinstance(connect, Connect) and connect.stream is not None
    assert connect.stream.url == "wss://edge.example.com/twilio/media"
    assert connect.stream.parameters == {"token": 'tok"en<&>'}  # escaping round-trips
    assert connect.stream.status_callback == f"{BASE}/twilio/stream-status"
    assert connect.action is None
    assert redirect == Redirect(f"{BASE}/twilio/voice/resume", "POST")
    assert document.stream is connect.stream


def test_edge_hangup_documents() -> None:
    assert parse_twiml(edge_twiml.hangup()).verbs == (Hangup(),)
    document = parse_twiml(edge_twiml.say_and_hangup("Sorry & goodbye"))
    assert document.verbs == (Say("Sorry & goodbye"), Hangup())
    assert document.stream is None


def test_relative_urls_resolve_against_the_document() -> None:
    text = (
        '<Response><Connect action="/after"><Stream url="wss://h.example/m"/></Connect>'
        "<Redirect>next</Redirect></Response>"
    )
    connect, redirect = parse_twiml(text, f"{BASE}/twilio/voice").verbs
    assert isinstance(connect, Connect) and connect.action == f"{BASE}/after"
    assert redirect == Redirect(f"{BASE}/twilio/next")


def test_other_verbs() -> None:
    text = (
        '<Response><Pause length="2"/><Reject reason="busy"/><Gather/>'
        '<Start><Stream url="wss://h.example/m"/></Start></Response>'
    )
    document = parse_twiml(text)
    pause, reject, gather, start = document.verbs
    assert pause == Pause(2.0)
    assert reject == Reject("busy")
    assert gather == UnknownVerb("Gather")
    assert isinstance(start, StartStream) and start.stream.url == "wss://h.example/m"
    assert any("listen-only" in problem for problem in document.problems)


@pytest.mark.parametrize(
    ("stream", "problem"),
    [
        ('<Stream url="ws://h.example/m"/>', "scheme must be wss"),
        ('<Stream url="https://h.example/m"/>', "scheme must be wss"),
        ('<Stream url="wss://h.example/m?token=1"/>', "query strings"),
        ("<Stream/>", "no url"),
        (
            '<Stream url="wss://h.example/m"/><Stream url="wss://h.example/n"/>',
            "several <Stream>s",
        ),
        (
            f'<Stream url="wss://h.example/m"><Parameter name="t" value="{"x" * 499}"/></Stream>',
            "under 500",
        ),
        ('<Stream url="wss://h.example/m"><Parameter value="v"/></Stream>', "without a name"),
        ('<Stream url="wss://h.example/m" statusCallbackMethod="PUT"/>', "GET or POST"),
    ],
)
def test_stream_problems_are_listed(stream: str, problem: str) -> None:
    document = parse_twiml(f"<Response><Connect>{stream}</Connect></Response>")
    assert any(problem in p for p in document.problems), document.problems


def test_connect_without_stream() -> None:
    document = parse_twiml("<Response><Connect/></Response>")
    assert document.verbs == (Connect(None),)
    assert any("without a <Stream>" in p for p in document.problems)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("not xml", "well-formed"),
        ("<Response><Say>unclosed</Response>", "well-formed"),
        ("<Other/>", "root element"),
        ('<!DOCTYPE r [<!ENTITY a "b">]><Response/>', "DOCTYPE"),
    ],
)
def test_not_twiml_raises(text: str, error: str) -> None:
    with pytest.raises(TwimlError, match=error):
        parse_twiml(text)
