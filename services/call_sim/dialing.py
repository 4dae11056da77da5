"""Executing a ``<Dial>`` as Twilio's voice engine would: ring the simulated person, and if they
answer, fetch their ``<Number url>`` / ``<Sip url>`` document (the whisper), then keep them on
the line for their talk time. Returns what the ``<Dial action>`` request adds to the caller's
parameters; the call (``call.py``) requests it and follows its answer.

The signed request for the whisper is the call's own, passed in as ``fetch``: a failure there
raises out of ``run_dial`` and ends the call like any other webhook failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from services.call_sim.callee import Callee, action_params, child_params, plan_ring
from services.call_sim.dial_twiml import Dial
from services.call_sim.report import DialRecord
from services.call_sim.routing import new_sid
from services.call_sim.twiml import TwimlDocument
from services.call_sim.whisper import read_whisper

__all__ = ["Callee", "DialContext", "FetchTwiml", "run_dial"]

FetchTwiml = Callable[[str, str, dict[str, str]], Awaitable[TwimlDocument]]


@dataclass(frozen=True, slots=True)
class DialContext:
    """The calling leg and the person at the other end."""

    call_sid: str
    account_sid: str
    callee: Callee
    ring_s: float
    talk_s: float
    fetch: FetchTwiml  # a signed request for TwiML: (url, method, params) → document
    problem: Callable[[str], None]  # a protocol problem, for the report
    note: Callable[[str], None]  # a non-fatal observation


async def run_dial(dial: Dial, record: DialRecord, context: DialContext) -> dict[str, str] | None:
    """Play ``dial`` against the configured callee, filling ``record`` as it goes.

    The parameters for the action request (DialCallStatus, DialCallSid, ...), or None when the
    ``<Dial>`` holds only nouns the simulator cannot ring: the call cannot go on.
    """
    noun = dial.nouns[0] if dial.nouns else None
    if noun is None and dial.unsupported:
        return None
    loop = asyncio.get_running_loop()
    child_sid = new_sid("CA")
    record.dial_call_sid = child_sid
    plan = plan_ring(
        context.callee, context.ring_s, dial.timeout_s, noun is not None and noun.dialable
    )
    record.ring_s = plan.ring_s
    await asyncio.sleep(plan.ring_s)
    bridged, connected_s = False, 0.0
    if plan.answered and noun is not None:
        answered_at = loop.time()
        declined = False
        if noun.url is not None:
            record.whisper_url = noun.url
            params = child_params(
                child_sid=child_sid,
                parent_sid=context.call_sid,
                account_sid=context.account_sid,
                from_=record.from_number,
                to=noun.address,
            )
            outcome = read_whisper(await context.fetch(noun.url, noun.method, params))
            record.whisper = list(outcome.heard)
            record.whisper_declined = declined = outcome.declined
            for problem in outcome.problems:
                context.problem(f"whisper twiml: {problem}")
            for note in outcome.notes:
                context.note(note)
        if not declined:
            bridged = True
            await asyncio.sleep(context.talk_s)
        connected_s = loop.time() - answered_at
    params = action_params(
        status=plan.status,
        child_sid=child_sid,
        answered=plan.answered,
        bridged=bridged,
        duration_s=connected_s,
        kind=noun.kind if noun is not None else None,
    )
    record.dial_call_status = plan.status
    record.bridged = bridged
    record.connected_s = connected_s
    if "DialCallDuration" in params:
        record.dial_call_duration = int(params["DialCallDuration"])
    return params
