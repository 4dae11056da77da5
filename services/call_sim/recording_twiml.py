"""``<Start><Recording>`` and ``<Stop><Recording>``, read as Twilio's voice engine reads them,
sans I/O (https://www.twilio.com/docs/voice/twiml/recording).

``<Start><Recording>`` begins recording at once and the document goes on with the next verb;
the recording lasts until the call ends or a ``<Stop><Recording name=...>`` stops it. It records
only from where it stands: after a ``<Connect><Stream>`` (which holds the document until the
stream ends) it misses the whole stream, which ``twiml.py`` flags. A bad attribute value is
reported and the documented default used in its place.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Final

from services.call_sim.dial_twiml import AttributeReader
from services.call_sim.recording import (
    CHANNELS,
    RECORDING_EVENTS,
    TRACKS,
    TRIMS,
    RecordingSpec,
)

__all__ = ["StartRecording", "StopRecording", "parse_start_recording", "parse_stop_recording"]

_ATTRIBUTES: Final = frozenset(
    {
        "name",
        "recordingStatusCallback",
        "recordingStatusCallbackMethod",
        "recordingStatusCallbackEvent",
        "trim",
        "track",
        "channels",
        "recordingConfigurationId",
    }
)


@dataclass(frozen=True, slots=True)
class StartRecording:
    spec: RecordingSpec


@dataclass(frozen=True, slots=True)
class StopRecording:
    name: str | None  # None: Twilio has nothing to stop it by


def _choice(reader: AttributeReader, name: str, allowed: tuple[str, ...], default: str) -> str:
    raw = reader.element.get(name)
    if raw is None:
        return default
    if raw not in allowed:
        reader.problem(f"{name}={raw!r}: must be one of {', '.join(allowed)}; {default} is used")
        return default
    return raw


def parse_start_recording(
    element: ET.Element, base: str | None, problems: list[str]
) -> StartRecording:
    """Read the ``<Recording>`` noun of a ``<Start>``; relative URLs resolve against ``base``."""
    reader = AttributeReader(element, base, problems)
    reader.unknown_attributes(_ATTRIBUTES)
    for child in element:
        reader.problem(f"holds <{child.tag}>: <Recording> takes no nested elements")
    callback = reader.url("recordingStatusCallback")
    events = reader.events("recordingStatusCallbackEvent", frozenset(RECORDING_EVENTS))
    if "recordingStatusCallbackEvent" in element.attrib and callback is None:
        reader.problem("recordingStatusCallbackEvent without a recordingStatusCallback: no use")
    name = element.get("name")
    if name is not None and not name.strip():
        reader.problem("name='': an empty name cannot be stopped by")
        name = None
    spec = RecordingSpec(
        name=name,
        channels=_choice(reader, "channels", CHANNELS, "dual"),
        track=_choice(reader, "track", TRACKS, "both"),
        trim=_choice(reader, "trim", TRIMS, "trim-silence"),
        status_callback=callback,
        status_callback_method=reader.method("recordingStatusCallbackMethod"),
        status_callback_events=events or ("completed",),
        configuration_id=element.get("recordingConfigurationId"),
    )
    return StartRecording(spec)


def parse_stop_recording(element: ET.Element, problems: list[str]) -> StopRecording:
    """Read the ``<Recording>`` noun of a ``<Stop>``: only its ``name`` counts."""
    reader = AttributeReader(element, None, problems)
    reader.unknown_attributes(frozenset({"name"}))
    name = (element.get("name") or "").strip()
    if not name:
        reader.problem("in <Stop> needs the name the recording was started with")
    return StopRecording(name or None)
