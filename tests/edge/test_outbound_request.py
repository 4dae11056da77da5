"""POST /calls' request, checked field by field, and what Twilio is asked for."""

from __future__ import annotations

import orjson
import pytest

from services.edge.outbound_request import (
    CALL_EVENTS,
    BadRequest,
    OutboundRequest,
    create_params,
    parse_outbound,
)
from services.edge.urls import PublicUrls
from shared.agents import Agent, Agents

SUPPORT = Agent("support", ("+15005550006", "+15005550010"))
SALES = Agent("sales", ("*",))
AGENTS = Agents((SUPPORT, SALES), "agents.yaml")
URLS = PublicUrls("https://edge.example.com")


def _parse(prefixes: tuple[str, ...] = (), *, from_: str = "", **body: object) -> OutboundRequest:
    return parse_outbound(orjson.dumps({"from": from_, **body}), AGENTS, prefixes)


def _problems(
    prefixes: tuple[str, ...] = (), *, from_: str = "", **body: object
) -> tuple[int, list[str]]:
    with pytest.raises(BadRequest) as caught:
        _parse(prefixes, from_=from_, **body)
    return caught.value.status, caught.value.problems


def test_a_good_request() -> None:
    wanted = _parse(
        to="+15005550001",
        from_="+15005550010",
        agent="support",
        machine_detection=True,
        variables={"name": "Ada", "order_id": "42"},
    )
    assert wanted == OutboundRequest(
        "+15005550001", "+15005550010", SUPPORT, True, {"name": "Ada", "order_id": "42"}
    )


def test_every_problem_is_named_by_its_field() -> None:
    status, problems = _problems(
        to="5550001",
        from_="+15005550099",
        agent="support",
        machine_detection="yes",
        variables={"1bad": "x", "caller": "me", "long": "x" * 1001, "n": 5},
        extra=1,
    )
    assert status == 422
    assert problems == [
        "unknown field 'extra'",
        "field 'to' must be an E.164 number (+ then up to 15 digits, e.g. +15005550006)",
        "field 'from': +15005550099 is not a number of agent 'support' (its numbers: "
        "+15005550006, +15005550010)",
        "field 'machine_detection' must be true or false",
        "field 'variables': '1bad' is not a name (letters, digits, '_'; up to 64)",
        "field 'variables': 'caller' is set by Switchboard for every call",
        "field 'variables': long must be a string of at most 1000 characters",
        "field 'variables': n must be a string of at most 1000 characters",
    ]


def test_an_unknown_agent_and_an_agent_without_numbers() -> None:
    _, problems = _problems(to="+15005550001", from_="+15005550006", agent="ghost")
    assert problems == ["field 'agent': 'ghost' is not an agent of AGENTS_FILE (support, sales)"]
    _, problems = _problems(to="+15005550001", from_="+15005550006", agent="sales")
    assert problems == [
        "field 'from': +15005550006 is not a number of agent 'sales' (it has no numbers of its own)"
    ]


def test_allowed_prefixes_refuse_other_countries() -> None:
    good = _parse(("+1", "+44"), to="+447700900123", from_="+15005550006", agent="support")
    assert good.to == "+447700900123"
    _, problems = _problems(("+1", "+44"), to="+33612345678", from_="+15005550006")
    assert "field 'to': +33612345678 is outside OUTBOUND_ALLOWED_PREFIXES (+1, +44)" in problems


def test_the_only_agent_is_the_default_and_not_json_is_400() -> None:
    only = Agents((SUPPORT,))
    wanted = parse_outbound(b'{"to": "+15005550001", "from": "+15005550006"}', only, ())
    assert wanted.agent is SUPPORT and not wanted.machine_detection
    for body in (b"{", b"[1]"):
        with pytest.raises(BadRequest) as caught:
            parse_outbound(body, only, ())
        assert caught.value.status == 400


def test_what_twilio_is_asked_for() -> None:
    plain = _parse(to="+15005550001", from_="+15005550006", agent="support")
    assert create_params(plain, URLS, 30, 30) == {
        "to": "+15005550001",
        "from_": "+15005550006",
        "url": "https://edge.example.com/twilio/voice",
        "method": "POST",
        "status_callback": "https://edge.example.com/twilio/outbound/status",
        "status_callback_event": list(CALL_EVENTS),
        "status_callback_method": "POST",
        "timeout": 30,
    }
    detecting = OutboundRequest(plain.to, plain.from_, SUPPORT, True)
    params = create_params(detecting, URLS, 45, 30)
    assert params["machine_detection"] == "DetectMessageEnd"
    assert params["async_amd"] == "true"
    assert params["async_amd_status_callback"] == "https://edge.example.com/twilio/outbound/amd"
    assert (params["machine_detection_timeout"], params["timeout"]) == (30, 45)
