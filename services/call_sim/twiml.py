"""The TwiML an edge answers with, parsed the way Twilio's voice engine reads it, sans I/O.

``parse_twiml(text, document_url)`` returns the verbs in order. Anything Twilio would refuse
outright (not XML, no ``<Response>`` root) raises ``TwimlError``; anything that would fail later
on a real call (a ``ws://`` or query-carrying stream URL, two streams, an oversized
``<Parameter>``, a listen-only ``<Start><Stream>``, a bad ``<Dial>``: see ``dial_twiml.py``; a
bad ``<Recording>`` or one started after the stream it should record: ``recording_twiml.py``) is
listed in ``TwimlDocument.problems`` so the caller can report it without stopping.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urljoin, urlsplit

from services.call_sim.dial_twiml import Dial, DialNoun, parse_dial
from services.call_sim.recording_twiml import (
    StartRecording,
    StopRecording,
    parse_start_recording,
    parse_stop_recording,
)

__all__ = [
    "Connect",
    "Dial",
    "DialNoun",
    "Hangup",
    "Pause",
    "Redirect",
    "Reject",
    "Say",
    "StartRecording",
    "StartStream",
    "StopRecording",
    "Stream",
    "TwimlDocument",
    "TwimlError",
    "UnknownVerb",
    "Verb",
    "parse_twiml",
    "verb_names",
]

MAX_PARAMETER_CHARS: Final = 500  # name + value, each pair (docs/protocols.md §2.2)


class TwimlError(ValueError):
    """The document is not TwiML at all; Twilio would play its 'application error' message."""


@dataclass(frozen=True, slots=True)
class Stream:
    url: str  # absolute, resolved against the document URL
    parameters: dict[str, str] = field(default_factory=dict, hash=False)
    status_callback: str | None = None
    status_callback_method: str = "POST"
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Connect:
    """``<Connect><Stream>``: the bidirectional stream; ``action`` replaces the next verb."""

    stream: Stream | None
    action: str | None = None
    method: str = "POST"


@dataclass(frozen=True, slots=True)
class StartStream:
    """``<Start><Stream>``: listen-only, never what a voice bot wants."""

    stream: Stream


@dataclass(frozen=True, slots=True)
class Redirect:
    url: str
    method: str = "POST"


@dataclass(frozen=True, slots=True)
class Hangup:
    pass


@dataclass(frozen=True, slots=True)
class Reject:
    reason: str = "rejected"


@dataclass(frozen=True, slots=True)
class Say:
    text: str


@dataclass(frozen=True, slots=True)
class Pause:
    length_s: float = 1.0


@dataclass(frozen=True, slots=True)
class UnknownVerb:
    name: str


Verb = (
    Connect
    | StartStream
    | StartRecording
    | StopRecording
    | Redirect
    | Hangup
    | Reject
    | Say
    | Pause
    | Dial
    | UnknownVerb
)


@dataclass(frozen=True, slots=True)
class TwimlDocument:
    verbs: tuple[Verb, ...]
    problems: tuple[str, ...] = ()

    @property
    def stream(self) -> Stream | None:
        """The first ``<Connect><Stream>``, if any."""
        for verb in self.verbs:
            if isinstance(verb, Connect) and verb.stream is not None:
                return verb.stream
        return None


_TAGS: Final[dict[type, str]] = {
    StartStream: "Start",
    StartRecording: "Start",
    StopRecording: "Stop",
}


def verb_names(document: TwimlDocument) -> list[str]:
    """The verbs' tags, in order: ``["Connect", "Redirect"]``."""
    return [
        verb.name if isinstance(verb, UnknownVerb) else _TAGS.get(type(verb), type(verb).__name__)
        for verb in document.verbs
    ]


def _resolve(url: str, base: str | None) -> str:
    url = url.strip()
    return urljoin(base, url) if base else url


def _method(element: ET.Element, attribute: str, problems: list[str]) -> str:
    method = element.get(attribute, "POST").upper()
    if method not in ("GET", "POST"):
        problems.append(f"<{element.tag} {attribute}={method!r}>: must be GET or POST")
    return method


def _stream(element: ET.Element, base: str | None, problems: list[str]) -> Stream:
    raw_url = element.get("url")
    if not raw_url:
        problems.append("<Stream> has no url")
    url = _resolve(raw_url or "", base)
    parts = urlsplit(url)
    if raw_url and parts.scheme != "wss":
        problems.append(f"<Stream url={url!r}>: scheme must be wss (Twilio error 31922)")
    if parts.query:
        problems.append(f"<Stream url={url!r}>: query strings are unsupported (Twilio 31920)")
    parameters: dict[str, str] = {}
    for child in element:
        if child.tag != "Parameter":
            problems.append(f"<Stream> holds an unexpected <{child.tag}>")
            continue
        name, value = child.get("name"), child.get("value", "")
        if not name:
            problems.append("<Parameter> without a name")
            continue
        if len(name) + len(value) >= MAX_PARAMETER_CHARS:
            problems.append(f"<Parameter name={name!r}>: name + value must be under 500 chars")
        parameters[name] = value
    callback = element.get("statusCallback")
    return Stream(
        url=url,
        parameters=parameters,
        status_callback=_resolve(callback, base) if callback else None,
        status_callback_method=_method(element, "statusCallbackMethod", problems),
        name=element.get("name"),
    )


def _connect(element: ET.Element, base: str | None, problems: list[str]) -> Connect:
    streams = [child for child in element if child.tag == "Stream"]
    others = [child.tag for child in element if child.tag != "Stream"]
    if others:
        problems.append(f"<Connect> holds {others}: the simulator only plays <Stream>")
    if not streams:
        problems.append("<Connect> without a <Stream>")
    if len(streams) > 1:
        problems.append("<Connect> holds several <Stream>s: one bidirectional stream per call")
    action = element.get("action")
    return Connect(
        stream=_stream(streams[0], base, problems) if streams else None,
        action=_resolve(action, base) if action else None,
        method=_method(element, "method", problems),
    )


def _start(element: ET.Element, base: str | None, problems: list[str]) -> Verb:
    streams = [child for child in element if child.tag == "Stream"]
    recordings = [child for child in element if child.tag == "Recording"]
    if recordings:
        if len(element) > 1:
            problems.append(
                f"<Start> holds {[child.tag for child in element]}: the simulator runs only "
                "its first <Recording>"
            )
        return parse_start_recording(recordings[0], base, problems)
    if not streams:
        return UnknownVerb("Start")
    problems.append("<Start><Stream> is listen-only: a bidirectional stream needs <Connect>")
    return StartStream(_stream(streams[0], base, problems))


def _stop(element: ET.Element, base: str | None, problems: list[str]) -> Verb:
    recordings = [child for child in element if child.tag == "Recording"]
    if not recordings:
        return UnknownVerb("Stop")
    if len(element) > 1:
        problems.append(
            f"<Stop> holds {[child.tag for child in element]}: the simulator runs only its "
            "first <Recording>"
        )
    return parse_stop_recording(recordings[0], problems)


def _redirect(element: ET.Element, base: str | None, problems: list[str]) -> Redirect:
    text = (element.text or "").strip()
    if not text:
        problems.append("<Redirect> without a URL")
    return Redirect(_resolve(text, base), _method(element, "method", problems))


def _pause(element: ET.Element, base: str | None, problems: list[str]) -> Pause:
    try:
        return Pause(float(element.get("length", "1")))
    except ValueError:
        problems.append(f"<Pause length={element.get('length')!r}>: not a number")
        return Pause()


_VERBS: Final[dict[str, Callable[[ET.Element, str | None, list[str]], Verb]]] = {
    "Connect": _connect,
    "Start": _start,
    "Stop": _stop,
    "Redirect": _redirect,
    "Hangup": lambda element, base, problems: Hangup(),
    "Reject": lambda element, base, problems: Reject(element.get("reason", "rejected")),
    "Say": lambda element, base, problems: Say((element.text or "").strip()),
    "Pause": _pause,
    "Dial": parse_dial,
}


def parse_twiml(text: str | bytes, document_url: str | None = None) -> TwimlDocument:
    """Parse a TwiML document; relative URLs resolve against ``document_url``.

    Raises ``TwimlError`` if it is not XML or its root is not ``<Response>``.
    """
    raw = text.encode() if isinstance(text, str) else text
    if b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:
        # TwiML never needs a DTD, and refusing one keeps entity expansion out of the parser.
        raise TwimlError("TwiML must not carry a DOCTYPE")
    try:
        root = ET.fromstring(raw)
    except ET.ParseError as exc:
        raise TwimlError(f"not well-formed XML: {exc}") from None
    if root.tag != "Response":
        raise TwimlError(f"the root element must be <Response>, got <{root.tag}>")
    problems: list[str] = []
    verbs: list[Verb] = []
    for element in root:
        build = _VERBS.get(element.tag)
        verbs.append(
            UnknownVerb(element.tag) if build is None else build(element, document_url, problems)
        )
    if sum(isinstance(v, Connect) and v.stream is not None for v in verbs) > 1:
        problems.append("several <Connect><Stream>s in one document")
    streamed = False
    for verb in verbs:
        if isinstance(verb, Connect) and verb.stream is not None:
            streamed = True
        elif isinstance(verb, StartRecording) and streamed:
            problems.append(
                "<Start><Recording> after <Connect><Stream>: Twilio starts recording only when "
                "the stream has ended, so the stream is not recorded; put it before <Connect>"
            )
    for index, verb in enumerate(verbs):
        if isinstance(verb, Dial) and verb.action is not None and index + 1 < len(verbs):
            rest = ", ".join(f"<{element.tag}>" for element in list(root)[index + 1 :])
            problems.append(f"{rest} after <Dial action=...> never run: Twilio follows the action")
            break
    return TwimlDocument(tuple(verbs), tuple(problems))
