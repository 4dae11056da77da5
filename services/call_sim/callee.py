"""The person a ``<Dial>`` rings (the "callee"), and the form parameters Twilio sends about that
call. Pure: no I/O, no clock.

``plan_ring`` says how long the phone rings and whether it is answered; ``child_params`` are the
parameters of the called party's leg (sent to ``<Number url>``); ``action_params`` are what the
``<Dial action>`` receives on top of the caller's own parameters
(https://www.twilio.com/docs/voice/twiml/dial#action).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Final, Literal, get_args

from services.call_sim.dial_twiml import NounKind

__all__ = [
    "CALLEES",
    "API_VERSION",
    "Callee",
    "DialCallStatus",
    "SIP_RESPONSE_CODES",
    "RingPlan",
    "action_params",
    "child_params",
    "plan_ring",
    "whole_seconds",
]

Callee = Literal["answer", "no-answer", "busy", "failed"]
CALLEES: Final[tuple[str, ...]] = get_args(Callee)
# The documented values; "canceled" (cancelled through the REST API) and "answered" (conferences)
# are never produced by the simulator.
DialCallStatus = Literal["completed", "answered", "busy", "no-answer", "failed", "canceled"]
API_VERSION: Final = "2010-04-01"
# The SIP final response per outcome: DialSipResponseCode, and SipResponseCode in the status
# callbacks of calls the REST API created (not settled by Twilio's docs; the usual SIP finals).
SIP_RESPONSE_CODES: Final[dict[str, str]] = {
    "completed": "200",
    "busy": "486",  # Busy Here
    "no-answer": "487",  # Request Terminated: the INVITE was cancelled at the timeout
    "failed": "404",  # Not Found
}


@dataclass(frozen=True, slots=True)
class RingPlan:
    ring_s: float  # how long the phone rings before it is answered or given up
    answered: bool
    status: DialCallStatus  # the DialCallStatus if nobody answers; "completed" if answered


def plan_ring(callee: Callee, ring_s: float, timeout_s: float, dialable: bool) -> RingPlan:
    """What happens to the call: busy and failed end at once; a callee who would answer after
    the ``<Dial timeout>`` never does (no-answer at the timeout); nothing rings longer than it.
    An address Twilio cannot dial fails whatever the callee would do."""
    if not dialable or callee == "failed":
        return RingPlan(0.0, False, "failed")
    if callee == "busy":
        return RingPlan(0.0, False, "busy")
    ring = min(ring_s, timeout_s)
    if callee == "answer" and ring_s <= timeout_s:
        return RingPlan(ring, True, "completed")
    return RingPlan(ring, False, "no-answer")


def whole_seconds(seconds: float) -> int:
    """A duration as Twilio reports it: whole seconds (rounded half up)."""
    return int(seconds + 0.5)


def child_params(
    *, child_sid: str, parent_sid: str, account_sid: str, from_: str, to: str
) -> dict[str, str]:
    """The called party's leg, once answered, as its ``<Number url>`` request carries it."""
    return {
        "CallSid": child_sid,
        "ParentCallSid": parent_sid,
        "AccountSid": account_sid,
        "From": from_,
        "To": to,
        "CallStatus": "in-progress",
        "Direction": "outbound-dial",
        "ApiVersion": API_VERSION,
    }


def action_params(
    *,
    status: DialCallStatus,
    child_sid: str,
    answered: bool,
    bridged: bool,
    duration_s: float,
    kind: NounKind | None,
) -> dict[str, str]:
    """What the ``<Dial action>`` request adds to the caller's standard parameters.

    DialCallDuration only when the called party answered; DialSipCallId and DialSipResponseCode
    only for ``<Sip>`` (https://www.twilio.com/docs/voice/twiml/sip).
    """
    params = {
        "DialCallStatus": status,
        "DialCallSid": child_sid,
        "DialBridged": "true" if bridged else "false",
    }
    if answered:
        params["DialCallDuration"] = str(whole_seconds(duration_s))
    if kind == "sip":
        params["DialSipCallId"] = f"{secrets.token_hex(16)}@0.0.0.0"
        params["DialSipResponseCode"] = SIP_RESPONSE_CODES.get(status, "500")
    return params
