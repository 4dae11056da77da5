"""``<Dial>`` and its ``<Number>``/``<Sip>`` nouns, read as Twilio's voice engine reads them, sans
I/O.

``parse_dial(element, document_url, problems)`` returns a ``Dial``; what Twilio would refuse,
warn about or fail on is appended to ``problems`` (with Twilio's warning code where it has one),
as are the nouns the simulator cannot play (``<Conference>``, ``<Queue>``, ``<Client>``...).
Attribute names are those of ``twilio.twiml.voice_response``; values as documented at
https://www.twilio.com/docs/voice/twiml/dial, /number and /sip. A bad value is reported and the
documented default used in its place.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import urljoin

from services.call_sim.amd import AMD_RANGES

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "AttributeReader",
    "MAX_NOUNS",
    "TIMEOUT_RANGE_S",
    "UNSUPPORTED_NOUNS",
    "Dial",
    "DialNoun",
    "NounKind",
    "parse_dial",
]

NounKind = Literal["number", "sip"]

DEFAULT_TIMEOUT_S: Final = 30
TIMEOUT_RANGE_S: Final = (5, 600)
DEFAULT_TIME_LIMIT_S: Final = 14400  # four hours
MAX_NOUNS: Final = 10  # Twilio rings at most ten at once
MAX_SIP_URI_CHARS: Final = 255
MAX_CALL_REASON_CHARS: Final = 50
# Nouns Twilio dials that the simulator has no model of.
UNSUPPORTED_NOUNS: Final = ("Client", "Conference", "Queue", "Sim", "Application", "WhatsApp")

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_SIP_URI = re.compile(
    r"sips?:(?:[^\s@]+@)?(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])"
    r"(?::[0-9]{1,5})?(?:;[^\s?]*)?(?:\?\S*)?",
    re.IGNORECASE,
)
_SIP_CALLER_ID = re.compile(r"[A-Za-z0-9+\-_.]+")  # any alphanumeric string, + - _ ., no space
_DIGITS = re.compile(r"[0-9#*wW]+")
_BYOC_SID = re.compile(r"BY[0-9a-fA-F]{32}")
_RING_TONE = re.compile(r"[a-z]{2}(?:-old)?")
_BOOLEANS: Final = ("true", "false")
_RECORD: Final = (
    "do-not-record",
    "record-from-answer",
    "record-from-ringing",
    "record-from-answer-dual",
    "record-from-ringing-dual",
    "true",  # alias of record-from-answer
    "false",  # alias of do-not-record
)
_CALL_EVENTS: Final = frozenset({"initiated", "ringing", "answered", "completed"})
_RECORDING_EVENTS: Final = frozenset({"in-progress", "completed", "absent"})
_DIAL_ATTRIBUTES: Final = frozenset(
    {
        "action",
        "answerOnBridge",
        "callerId",
        "callReason",
        "events",
        "hangupOnStar",
        "method",
        "passports",
        "record",
        "recordingConfigurationId",
        "recordingStatusCallback",
        "recordingStatusCallbackEvent",
        "recordingStatusCallbackMethod",
        "recordingTrack",
        "referMethod",
        "referUrl",
        "ringTone",
        "sequential",
        "timeLimit",
        "timeout",
        "trim",
    }
)
_AMD_ATTRIBUTES: Final = frozenset(
    {
        "machineDetection",
        "machineDetectionTimeout",
        "machineDetectionSpeechThreshold",
        "machineDetectionSpeechEndThreshold",
        "machineDetectionSilenceTimeout",
        "amdStatusCallback",
        "amdStatusCallbackMethod",
    }
)
_CALL_ATTRIBUTES: Final = frozenset(
    {"url", "method", "statusCallback", "statusCallbackEvent", "statusCallbackMethod"}
)
_NOUN_ATTRIBUTES: Final[dict[str, frozenset[str]]] = {
    "Number": _CALL_ATTRIBUTES | _AMD_ATTRIBUTES | {"sendDigits", "byoc"},
    "Sip": _CALL_ATTRIBUTES | _AMD_ATTRIBUTES | {"username", "password", "callerDisplayName"},
}
# Warning codes Twilio logs for a bad method on each element.
_METHOD_CODES: Final = {"Dial": 13210, "Number": 13221, "Sip": 13241}


@dataclass(frozen=True, slots=True)
class DialNoun:
    """One party to ring. ``address``: the number or SIP URI as written (stripped);
    ``dialable``: Twilio could place the call (an invalid address fails it)."""

    kind: NounKind
    address: str
    url: str | None = None  # the called party's TwiML (the whisper), resolved
    method: str = "POST"
    status_callback: str | None = None
    status_callback_method: str = "POST"
    status_callback_events: tuple[str, ...] = ()
    send_digits: str | None = None
    dialable: bool = True
    attributes: dict[str, str] = field(default_factory=dict, hash=False)  # as written


@dataclass(frozen=True, slots=True)
class Dial:
    """``<Dial>``. ``nouns``: what the simulator can ring, in order (plain text becomes one
    ``<Number>``); ``unsupported``: the tags of nouns it cannot."""

    nouns: tuple[DialNoun, ...]
    action: str | None = None
    method: str = "POST"
    timeout_s: int = DEFAULT_TIMEOUT_S
    caller_id: str | None = None
    time_limit_s: int = DEFAULT_TIME_LIMIT_S
    record: str = "do-not-record"
    hangup_on_star: bool = False
    answer_on_bridge: bool = False
    unsupported: tuple[str, ...] = ()
    attributes: dict[str, str] = field(default_factory=dict, hash=False)  # as written


class AttributeReader:
    """Reads one element's attributes, reporting bad values under its tag."""

    def __init__(self, element: ET.Element, base: str | None, problems: list[str]) -> None:
        self.element = element
        self.tag = element.tag
        self.base = base
        self.problems = problems

    def problem(self, text: str) -> None:
        self.problems.append(f"<{self.tag}> {text}")

    def url(self, name: str) -> str | None:
        raw = self.element.get(name)
        if raw is None:
            return None
        if not raw.strip():
            self.problem(f"{name}='': an empty URL")
            return None
        return urljoin(self.base, raw.strip()) if self.base else raw.strip()

    def method(self, name: str, code: int | None = None) -> str:
        raw = self.element.get(name)
        if raw is None:
            return "POST"
        if raw.upper() not in ("GET", "POST"):
            warning = f" (Twilio warning {code})" if code else ""
            self.problem(f"{name}={raw!r}: must be GET or POST{warning}")
            return "POST"
        return raw.upper()

    def boolean(self, name: str, code: int | None = None) -> bool:
        raw = self.element.get(name)
        if raw is None:
            return False
        if raw not in _BOOLEANS:
            warning = f" (Twilio warning {code})" if code else ""
            self.problem(f"{name}={raw!r}: must be true or false{warning}")
            return False
        return raw == "true"

    def integer(
        self, name: str, default: int, low: int, high: int | None, code: int | None = None
    ) -> int:
        raw = self.element.get(name)
        if raw is None:
            return default
        stripped = raw.strip()
        value = int(stripped) if stripped.isascii() and stripped.isdigit() else None
        if value is None or value < low or (high is not None and value > high):
            span = f"a whole number from {low} to {high}" if high else f"a whole number ≥ {low}"
            warning = f" (Twilio warning {code})" if code else ""
            self.problem(f"{name}={raw!r}: must be {span}{warning}; {default} is used")
            return default
        return value

    def choice(self, name: str, allowed: tuple[str, ...], code: int | None = None) -> None:
        raw = self.element.get(name)
        if raw is not None and raw not in allowed:
            warning = f" (Twilio warning {code})" if code else ""
            self.problem(f"{name}={raw!r}: must be one of {', '.join(allowed)}{warning}")

    def events(self, name: str, allowed: frozenset[str]) -> tuple[str, ...]:
        raw = self.element.get(name)
        if raw is None:
            return ()
        events = tuple(raw.split())
        wrong = [event for event in events if event not in allowed]
        if wrong or not events:
            self.problem(
                f"{name}={raw!r}: space-separated values from {', '.join(sorted(allowed))}"
            )
        return tuple(event for event in events if event in allowed)

    def pattern(self, name: str, regex: re.Pattern[str], what: str) -> str | None:
        raw = self.element.get(name)
        if raw is not None and not regex.fullmatch(raw):
            self.problem(f"{name}={raw!r}: must be {what}")
        return raw

    def unknown_attributes(self, known: frozenset[str]) -> None:
        for name in self.element.keys():
            if name not in known:
                self.problem(f"has an attribute {name!r} Twilio does not know: it is ignored")


def _check_address(kind: NounKind, address: str, reader: AttributeReader) -> bool:
    if not address:
        reader.problem("has no address to dial (Twilio warning 13223)")
        return False
    if kind == "number":
        if _E164.fullmatch(address):
            return True
        hint = " (use <Sip> for a SIP URI)" if address.lower().startswith("sip") else ""
        reader.problem(
            f"{address!r} is not an E.164 number: + then at most 15 digits "
            f"(Twilio warning 13223, error 13224){hint}"
        )
        return False
    if len(address) >= MAX_SIP_URI_CHARS or not _SIP_URI.fullmatch(address):
        reader.problem(
            f"{address!r} is not a sip: or sips: URI under {MAX_SIP_URI_CHARS} characters "
            "(Twilio warning 13243)"
        )
        return False
    return True


def _noun(element: ET.Element, kind: NounKind, base: str | None, problems: list[str]) -> DialNoun:
    reader = AttributeReader(element, base, problems)
    reader.unknown_attributes(_NOUN_ATTRIBUTES[element.tag])
    for child in element:
        reader.problem(f"holds <{child.tag}>: unsupported by the simulator")
    address = (element.text or "").strip()
    dialable = _check_address(kind, address, reader)
    send_digits = reader.pattern("sendDigits", _DIGITS, "digits, #, * and w")
    reader.pattern("byoc", _BYOC_SID, "a BYOC trunk SID (BY + 32 hex digits)")
    reader.choice("machineDetection", ("Enable", "DetectMessageEnd"))
    for name, (low, high, default) in AMD_RANGES.items():
        reader.integer(name, default, low, high)
    reader.url("amdStatusCallback")
    reader.method("amdStatusCallbackMethod")
    display = element.get("callerDisplayName")
    if display is not None and not (2 <= len(display.strip()) <= 255 and display.isprintable()):
        reader.problem(
            f"callerDisplayName={display!r}: 2 to 255 printable characters (Twilio warning 13259)"
        )
    return DialNoun(
        kind=kind,
        address=address,
        url=reader.url("url"),
        method=reader.method("method", _METHOD_CODES[element.tag]),
        status_callback=reader.url("statusCallback"),
        status_callback_method=reader.method("statusCallbackMethod"),
        status_callback_events=reader.events("statusCallbackEvent", _CALL_EVENTS),
        send_digits=send_digits,
        dialable=dialable,
        attributes=dict(element.attrib),
    )


def _plain_text(element: ET.Element) -> str:
    """The text directly inside ``<Dial>``, around its nouns."""
    return ((element.text or "") + "".join(child.tail or "" for child in element)).strip()


def _nouns(
    element: ET.Element, base: str | None, problems: list[str]
) -> tuple[list[DialNoun], list[str]]:
    nouns: list[DialNoun] = []
    unsupported: list[str] = []
    text = _plain_text(element)
    children = list(element)
    if text and children:
        problems.append(f"<Dial> holds both text {text!r} and nouns: Twilio reads one or the other")
    elif text:
        # <Dial>+15551234567</Dial> is a <Number> without attributes.
        bare = ET.Element("Number")
        bare.text = text
        nouns.append(_noun(bare, "number", base, problems))
    for child in children:
        if child.tag == "Number":
            nouns.append(_noun(child, "number", base, problems))
        elif child.tag == "Sip":
            nouns.append(_noun(child, "sip", base, problems))
        elif child.tag in UNSUPPORTED_NOUNS:
            unsupported.append(child.tag)
            problems.append(f"<Dial><{child.tag}>: unsupported by the simulator")
        else:
            problems.append(f"<Dial> holds <{child.tag}>, which is not a <Dial> noun")
    if not nouns and not unsupported:
        problems.append("<Dial> has nothing to dial (Twilio warning 13223)")
    if len(nouns) + len(unsupported) > MAX_NOUNS:
        problems.append(f"<Dial> holds more than {MAX_NOUNS} nouns: Twilio dials at most ten")
    elif len(nouns) > 1:
        problems.append(
            f"<Dial> rings {len(nouns)} parties at once: unsupported by the simulator, "
            "which rings only the first"
        )
    return nouns, unsupported


def _caller_id(reader: AttributeReader, nouns: list[DialNoun]) -> str | None:
    caller_id = reader.element.get("callerId")
    if caller_id is None:
        return None
    only_sip = bool(nouns) and all(noun.kind == "sip" for noun in nouns)
    if _E164.fullmatch(caller_id) or (only_sip and _SIP_CALLER_ID.fullmatch(caller_id)):
        return caller_id
    what = "E.164 or letters, digits and + - _ ." if only_sip else "an E.164 number"
    reader.problem(f"callerId={caller_id!r}: must be {what} (Twilio warning 13214)")
    return caller_id


def parse_dial(element: ET.Element, base: str | None, problems: list[str]) -> Dial:
    """Read one ``<Dial>`` element; relative URLs resolve against ``base``."""
    reader = AttributeReader(element, base, problems)
    reader.unknown_attributes(_DIAL_ATTRIBUTES)
    nouns, unsupported = _nouns(element, base, problems)
    low, high = TIMEOUT_RANGE_S
    reader.choice("record", _RECORD, 13217)
    reader.choice("trim", ("trim-silence", "do-not-trim"))
    reader.choice("recordingTrack", ("both", "inbound", "outbound"))
    reader.choice("events", ("call-progress-event",))
    reader.url("recordingStatusCallback")
    reader.method("recordingStatusCallbackMethod")
    reader.events("recordingStatusCallbackEvent", _RECORDING_EVENTS)
    reader.url("referUrl")
    reader.method("referMethod")
    reader.pattern("ringTone", _RING_TONE, "a two-letter country code such as us or uk")
    reader.boolean("sequential")
    reason = element.get("callReason")
    if reason is not None and len(reason) > MAX_CALL_REASON_CHARS:
        reader.problem(f"callReason is {len(reason)} characters: at most {MAX_CALL_REASON_CHARS}")
    return Dial(
        nouns=tuple(nouns),
        action=reader.url("action"),
        method=reader.method("method", _METHOD_CODES["Dial"]),
        timeout_s=reader.integer("timeout", DEFAULT_TIMEOUT_S, low, high, 13212),
        caller_id=_caller_id(reader, nouns),
        time_limit_s=reader.integer("timeLimit", DEFAULT_TIME_LIMIT_S, 1, None, 13216),
        record=element.get("record", "do-not-record"),
        hangup_on_star=reader.boolean("hangupOnStar", 13213),
        answer_on_bridge=reader.boolean("answerOnBridge"),
        unsupported=tuple(unsupported),
        attributes=dict(element.attrib),
    )
