"""What Twilio sends about a call the REST API created, sans I/O: the Call resource (the JSON of
``POST /Calls.json`` and ``GET /Calls/{Sid}.json``), the status callbacks' form fields, and the
asynchronous AMD callback's (https://www.twilio.com/docs/voice/api/call-resource,
https://www.twilio.com/docs/voice/answering-machine-detection).

A status callback carries the voice request's fields (CallSid, AccountSid, From, To,
CallStatus, Direction=outbound-api, ApiVersion) and CallbackSource=call-progress-events,
SequenceNumber (from 0, in the order sent) and Timestamp (RFC 2822, UTC). The final one adds
CallDuration (seconds), Duration (minutes, rounded up), SipResponseCode, ErrorCode for a call
that failed, AnsweredBy once AMD has decided, and the recording's fields when ``Record=true``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import Any, Final

from services.call_sim.callee import API_VERSION, SIP_RESPONSE_CODES
from services.call_sim.recording import Recording

__all__ = [
    "DIRECTION",
    "FAILED_ERROR",
    "FINAL_STATUSES",
    "CallFacts",
    "amd_params",
    "call_resource",
    "phone_number_sid",
    "rfc2822",
    "status_params",
]

DIRECTION: Final = "outbound-api"
CALLBACK_SOURCE: Final = "call-progress-events"
FINAL_STATUSES: Final = ("completed", "busy", "no-answer", "failed", "canceled")
# The code a failed call's final callback carries: 21214, "'To' phone number cannot be
# reached" (a choice: Twilio's docs name no code for it).
FAILED_ERROR: Final = 21214


def rfc2822(moment: datetime) -> str:
    """A date as Twilio writes it: ``Tue, 05 Mar 2019 17:04:27 +0000``."""
    return format_datetime(moment)


def phone_number_sid(account_sid: str, number: str) -> str:
    """The owned number's ``PN…`` sid: stable for a given account and number."""
    return "PN" + hashlib.sha256(f"{account_sid}:{number}".encode()).hexdigest()[:32]


def _formatted(number: str) -> str:
    """``to_formatted``: North American numbers as ``(415) 555-0100``, the rest as given."""
    if len(number) == 12 and number.startswith("+1"):
        return f"({number[2:5]}) {number[5:8]}-{number[8:]}"
    return number


@dataclass
class CallFacts:
    """What the Call resource says about one call at a given moment."""

    sid: str
    account_sid: str
    to: str
    from_: str
    status: str  # queued, ringing, in-progress, completed, busy, no-answer, failed
    date_created: datetime
    date_updated: datetime
    start_time: datetime | None = None  # when it was answered
    end_time: datetime | None = None
    duration_s: int | None = None
    answered_by: str | None = None


def call_resource(facts: CallFacts) -> dict[str, Any]:
    """The Call resource's JSON, with the fields ``twilio``'s CallInstance reads."""
    base = f"/{API_VERSION}/Accounts/{facts.account_sid}/Calls/{facts.sid}"
    return {
        "account_sid": facts.account_sid,
        "answered_by": facts.answered_by,
        "api_version": API_VERSION,
        "caller_name": None,
        "date_created": rfc2822(facts.date_created),
        "date_updated": rfc2822(facts.date_updated),
        "direction": DIRECTION,
        "duration": None if facts.duration_s is None else str(facts.duration_s),
        "end_time": None if facts.end_time is None else rfc2822(facts.end_time),
        "forwarded_from": None,
        "from": facts.from_,
        "from_formatted": _formatted(facts.from_),
        "group_sid": None,
        "parent_call_sid": None,
        "phone_number_sid": phone_number_sid(facts.account_sid, facts.from_),
        "price": None,
        "price_unit": "USD",
        "queue_time": "0",
        "sid": facts.sid,
        "start_time": None if facts.start_time is None else rfc2822(facts.start_time),
        "status": facts.status,
        "subresource_uris": {
            name: f"{base}/{path}.json"
            for name, path in (
                ("notifications", "Notifications"),
                ("recordings", "Recordings"),
                ("payments", "Payments"),
                ("events", "Events"),
                ("siprec", "Siprec"),
                ("streams", "Streams"),
                ("transcriptions", "Transcriptions"),
                ("user_defined_message_subscriptions", "UserDefinedMessageSubscriptions"),
                ("user_defined_messages", "UserDefinedMessages"),
            )
        },
        "to": facts.to,
        "to_formatted": _formatted(facts.to),
        "trunk_sid": None,
        "uri": f"{base}.json",
    }


def status_params(
    facts: CallFacts,
    *,
    call_status: str,
    sequence: int,
    timestamp: datetime,
    recording: Recording | None = None,
) -> dict[str, str]:
    """A status callback's form fields; the final-status ones when ``call_status`` is final."""
    params = {
        "CallSid": facts.sid,
        "AccountSid": facts.account_sid,
        "From": facts.from_,
        "To": facts.to,
        "CallStatus": call_status,
        "Direction": DIRECTION,
        "ApiVersion": API_VERSION,
        "CallbackSource": CALLBACK_SOURCE,
        "SequenceNumber": str(sequence),
        "Timestamp": rfc2822(timestamp),
    }
    if facts.answered_by is not None:
        params["AnsweredBy"] = facts.answered_by
    if call_status in FINAL_STATUSES:
        seconds = facts.duration_s or 0
        params["CallDuration"] = str(seconds)
        params["Duration"] = str(math.ceil(seconds / 60))
        params["SipResponseCode"] = SIP_RESPONSE_CODES.get(call_status, "500")
        if call_status == "failed":
            params["ErrorCode"] = str(FAILED_ERROR)
        if recording is not None and recording.status == "completed":
            params["RecordingUrl"] = recording.url
            params["RecordingSid"] = recording.sid
            params["RecordingDuration"] = str(recording.duration_s)
    return params


def amd_params(
    *, call_sid: str, account_sid: str, answered_by: str, duration_ms: int
) -> dict[str, str]:
    """The AsyncAmdStatusCallback's form fields."""
    return {
        "CallSid": call_sid,
        "AccountSid": account_sid,
        "AnsweredBy": answered_by,
        "MachineDetectionDuration": str(duration_ms),
    }
