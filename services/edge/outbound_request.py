"""``POST /calls``: the request, checked, and what Twilio is asked for. Pure: no I/O.

The body is JSON::

    {"to": "+15005550001", "from": "+15005550006", "agent": "support",
     "machine_detection": true, "variables": {"name": "Ada"}}

``from`` must be one of the agent's own numbers (Twilio places calls only from numbers the
account owns, and the answer webhook must find the agent again); ``to`` an E.164 number within
OUTBOUND_ALLOWED_PREFIXES when that is set. Every problem is listed, each naming its field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from services.edge.urls import PublicUrls
from shared.agents import ANY_NUMBER, Agent, Agents, is_e164

__all__ = [
    "CALL_EVENTS",
    "MAX_BODY_BYTES",
    "RESERVED_VARIABLES",
    "BadRequest",
    "OutboundRequest",
    "create_params",
    "parse_outbound",
]

MAX_BODY_BYTES: Final = 16_384
MAX_VARIABLES: Final = 50
MAX_VARIABLE_CHARS: Final = 1000
#: Filled in by Switchboard for every call (call_profile.CallParty): not the request's to set.
RESERVED_VARIABLES: Final = frozenset({"call_sid", "caller", "called", "direction", "agent"})
#: The call progress events Twilio reports to the status callback.
CALL_EVENTS: Final = ("initiated", "ringing", "answered", "completed")
_FIELDS: Final = frozenset({"to", "from", "agent", "machine_detection", "variables"})
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


class BadRequest(Exception):
    """The request cannot be placed; ``problems`` says why, each naming its field."""

    def __init__(self, status: int, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.status = status
        self.problems = problems


@dataclass(frozen=True, slots=True)
class OutboundRequest:
    to: str
    from_: str
    agent: Agent
    machine_detection: bool = False
    variables: Mapping[str, str] = field(default_factory=dict)


def parse_outbound(
    body: bytes, agents: Agents, allowed_prefixes: tuple[str, ...]
) -> OutboundRequest:
    """The checked request; raises ``BadRequest`` (400: not a JSON object; 422: a field)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(400, [f"the body is not JSON: {exc}"]) from None
    if not isinstance(data, dict):
        raise BadRequest(400, ["the body must be a JSON object"])
    problems = [f"unknown field {key!r}" for key in data if key not in _FIELDS]
    to = _number(data, "to", problems)
    if to is not None and allowed_prefixes and not to.startswith(allowed_prefixes):
        problems.append(
            f"field 'to': {to} is outside OUTBOUND_ALLOWED_PREFIXES ({', '.join(allowed_prefixes)})"
        )
    from_ = _number(data, "from", problems)
    agent = _agent(data, agents, problems)
    if agent is not None and from_ is not None and from_ not in agent.numbers:
        own = [n for n in agent.numbers if n != ANY_NUMBER]
        problems.append(
            f"field 'from': {from_} is not a number of agent {agent.name!r}"
            + (f" (its numbers: {', '.join(own)})" if own else " (it has no numbers of its own)")
        )
    detection = data.get("machine_detection", False)
    if not isinstance(detection, bool):
        problems.append("field 'machine_detection' must be true or false")
    variables = _variables(data.get("variables", {}), problems)
    if problems or to is None or from_ is None or agent is None:
        raise BadRequest(422, problems)
    return OutboundRequest(to, from_, agent, detection is True, variables)


def _number(data: dict[str, Any], key: str, problems: list[str]) -> str | None:
    value = data.get(key)
    if not isinstance(value, str) or not is_e164(value):
        problems.append(
            f"field {key!r} must be an E.164 number (+ then up to 15 digits, e.g. +15005550006)"
        )
        return None
    return value


def _agent(data: dict[str, Any], agents: Agents, problems: list[str]) -> Agent | None:
    name = data.get("agent")
    if name is None and len(agents.agents) == 1:
        return agents.agents[0]
    agent = agents.named(name) if isinstance(name, str) else None
    if agent is None:
        known = ", ".join(a.name for a in agents.agents)
        problems.append(f"field 'agent': {name!r} is not an agent of AGENTS_FILE ({known})")
    return agent


def _variables(value: object, problems: list[str]) -> dict[str, str]:
    if not isinstance(value, dict):
        problems.append("field 'variables' must map names to strings")
        return {}
    if len(value) > MAX_VARIABLES:
        problems.append(f"field 'variables' holds more than {MAX_VARIABLES} names")
    variables: dict[str, str] = {}
    for name, text in value.items():
        if not _VARIABLE_NAME.fullmatch(name):
            problems.append(
                f"field 'variables': {name!r} is not a name (letters, digits, '_'; up to 64)"
            )
        elif name in RESERVED_VARIABLES:
            problems.append(f"field 'variables': {name!r} is set by Switchboard for every call")
        elif not isinstance(text, str) or len(text) > MAX_VARIABLE_CHARS:
            problems.append(
                f"field 'variables': {name} must be a string of at most {MAX_VARIABLE_CHARS} "
                "characters"
            )
        else:
            variables[name] = text
    return variables


def create_params(
    request: OutboundRequest, urls: PublicUrls, ring_timeout_s: int, amd_timeout_s: int
) -> dict[str, Any]:
    """The keyword arguments of the ``twilio`` package's ``calls.create_async``: the answered
    call requests the edge's voice webhook (the same ``<Connect><Stream>`` as an inbound
    call), its progress goes to the status route; with machine detection, Twilio connects at
    once and reports who answered to the AMD route (``AsyncAmd``), after a machine's beep."""
    params: dict[str, Any] = {
        "to": request.to,
        "from_": request.from_,
        "url": urls.voice,
        "method": "POST",
        "status_callback": urls.call_status,
        "status_callback_event": list(CALL_EVENTS),
        "status_callback_method": "POST",
        "timeout": ring_timeout_s,
    }
    if request.machine_detection:
        params |= {
            "machine_detection": "DetectMessageEnd",
            "machine_detection_timeout": amd_timeout_s,
            "async_amd": "true",
            "async_amd_status_callback": urls.amd,
            "async_amd_status_callback_method": "POST",
        }
    return params
