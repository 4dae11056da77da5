"""Agents: who answers which phone number, and how (AGENTS_FILE). Pure: no I/O but reading the
file.

The file is YAML (so JSON too) holding ``agents:``, a list of::

    - name: support
      numbers: ["+15005550006"]        # Twilio's To; "*" answers every other number
      instructions: "You are the support line of ..."
      voice: marin
      greeting: "Hello, support here. How can I help?"
      tools: [lookup_order]            # names from TOOLS_FILE
      transfer_targets: {billing: "+15005550007", sales: "sip:sales@pbx.example.com"}
      warm_transfer: false
      max_call_duration: 600
      max_tokens_per_call: 0
      voicemail: message               # an answering machine: hang up, or leave a message
      voicemail_message: "Hi {name}, this is Acme calling about your order. Please call back."
      fax_or_unknown: greet            # detection says fax or cannot tell: greet, hangup, voicemail
      record: true                     # Twilio records the call (dual channel)
      recording_notice: "This call is recorded."   # said before anything else when recorded

Every field but ``name`` and ``numbers`` is optional; a missing one takes the worker's global
setting (INSTRUCTIONS, VOICE, MAX_CALL_DURATION, MAX_TOKENS_PER_CALL), and an agent without
``tools`` offers none of TOOLS_FILE's (only the default agent, without AGENTS_FILE, offers
them all). The edge reads the file to pick the agent of a call from
its number; the worker to configure the call's session. Both check it at start-up, listing
every problem by file, agent and field; only the worker can check tool names (it reads
TOOLS_FILE), through ``unknown_tools``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

__all__ = [
    "ANY_NUMBER",
    "DEFAULT_AGENT",
    "UNDETERMINED_POLICIES",
    "VOICEMAIL_POLICIES",
    "VOICES",
    "Agent",
    "Agents",
    "AgentsError",
    "check_voice",
    "is_e164",
    "is_sip_uri",
    "load_agents",
    "parse_agents",
]

ANY_NUMBER: Final = "*"
DEFAULT_AGENT: Final = "default"  # the one agent without AGENTS_FILE
VOICES: Final = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "sage",
    "shimmer",
    "verse",
    "marin",
    "cedar",
)
MAX_GREETING_CHARS: Final = 1000
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
# A SIP URI Twilio's <Sip> noun dials: sip:/sips:, an optional user@, a host, parameters.
_SIP_URI = re.compile(
    r"sips?:(?:[^@\s<>\"]+@)?[A-Za-z0-9.\-\[\]:]+(?:;[^\s<>\"?]*)?(?:\?[^\s<>\"]*)?"
)
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_TARGET_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_FIELDS: Final = frozenset(
    {
        "name",
        "numbers",
        "instructions",
        "voice",
        "greeting",
        "tools",
        "transfer_targets",
        "warm_transfer",
        "max_call_duration",
        "max_tokens_per_call",
        "voicemail",
        "voicemail_message",
        "fax_or_unknown",
        "record",
        "recording_notice",
    }
)
VOICEMAIL_POLICIES: Final = ("hangup", "message")
UNDETERMINED_POLICIES: Final = ("greet", "hangup", "voicemail")


class AgentsError(ValueError):
    """The agents file is unusable; the message lists every problem, each naming the file,
    the agent and the field."""


def is_e164(value: str) -> bool:
    return bool(_E164.fullmatch(value))


def is_sip_uri(value: str) -> bool:
    return bool(_SIP_URI.fullmatch(value))


def check_voice(raw: str) -> str:
    """A voice the Realtime API offers, or a custom voice id; raises ValueError otherwise."""
    if raw in VOICES or raw.startswith("voice_"):
        return raw
    raise ValueError("expected one of " + ", ".join(VOICES) + ", or a custom voice id voice_…")


@dataclass(frozen=True, slots=True)
class Agent:
    """One agent. ``None`` fields take the worker's global settings."""

    name: str
    numbers: tuple[str, ...] = (ANY_NUMBER,)
    instructions: str | None = None
    voice: str | None = None
    greeting: str | None = None  # the words the caller hears first (the model says them)
    tools: tuple[str, ...] | None = None  # None: all of TOOLS_FILE (the default agent only)
    transfer_targets: Mapping[str, str] = field(default_factory=dict)  # name → E.164 or sip:
    warm_transfer: bool = False
    max_call_duration_s: float | None = None
    max_tokens_per_call: int | None = None
    # Outbound calls with machine detection: what an answering machine gets (hang up, or the
    # model says voicemail_message after the beep), and what a fax or an undecided line gets.
    voicemail: str = "hangup"
    voicemail_message: str | None = None
    fax_or_unknown: str = "greet"
    record: bool = False  # Twilio records the call, both channels (<Start><Recording>)
    recording_notice: str | None = None  # Twilio says it first when the call is recorded


@dataclass(frozen=True, slots=True)
class Agents:
    """The agents of AGENTS_FILE (``path``), or the one default agent without it."""

    agents: tuple[Agent, ...]
    path: str = ""

    def __str__(self) -> str:
        return self.path

    def for_number(self, number: str) -> Agent | None:
        """The agent answering calls to ``number`` (Twilio's To); the "*" agent for any
        other; None when there is neither."""
        fallback = None
        for agent in self.agents:
            if number in agent.numbers:
                return agent
            if ANY_NUMBER in agent.numbers:
                fallback = agent
        return fallback

    def named(self, name: str) -> Agent | None:
        return next((agent for agent in self.agents if agent.name == name), None)

    def unknown_tools(self, known: Iterable[str]) -> list[str]:
        """A problem for every tool an agent names that TOOLS_FILE does not declare (each
        starts with TOOLS_FILE: not reported again when TOOLS_FILE itself is invalid)."""
        declared = set(known)
        source = self.path or "AGENTS_FILE"
        return [
            f"TOOLS_FILE does not declare {tool!r}, named by agent {agent.name!r} (field "
            f"'tools') of {source}"
            for agent in self.agents
            for tool in agent.tools or ()
            if tool not in declared
        ]


def load_agents(path: str | Path) -> Agents:
    """The agents of the file at ``path``; raises AgentsError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise AgentsError(f"{path}: cannot read the agents file: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AgentsError(f"{path}: not valid YAML (or JSON): {exc}") from None
    return parse_agents(data, str(path))


def parse_agents(data: Any, source: str = "AGENTS_FILE") -> Agents:
    """Check the parsed file; every problem is listed, each naming the agent and the field."""
    if (
        not isinstance(data, dict)
        or set(data) != {"agents"}
        or not isinstance(data["agents"], list)
    ):
        raise AgentsError(f"{source}: expected a mapping with one key, agents: a list of agents")
    problems: list[str] = []
    agents: list[Agent] = []
    names: set[str] = set()
    owners: dict[str, str] = {}  # number → the agent answering it
    for index, entry in enumerate(data["agents"]):
        where = f"{source}: agent #{index + 1}"
        if not isinstance(entry, dict):
            problems.append(f"{where}: expected a mapping of fields")
            continue
        if isinstance(entry.get("name"), str) and entry["name"]:
            where = f"{source}: agent {entry['name']!r}"
        found: list[str] = []
        agent = _agent(entry, where, found)
        if agent is not None:
            if agent.name in names:
                found.append(f"{where}: field 'name': declared twice")
            names.add(agent.name)
            for number in agent.numbers:
                owner = owners.setdefault(number, agent.name)
                if owner != agent.name:
                    what = "'*' (every other number)" if number == ANY_NUMBER else number
                    found.append(
                        f"{where}: field 'numbers': {what} is answered by agent {owner!r} "
                        "already; a number has one agent"
                    )
        problems += found
        if agent is not None and not found:
            agents.append(agent)
    if not data["agents"]:
        problems.append(f"{source}: no agents: declare at least one")
    if problems:
        raise AgentsError("; ".join(problems))
    return Agents(tuple(agents), source)


def _agent(entry: dict[str, Any], where: str, problems: list[str]) -> Agent | None:
    problems += [f"{where}: unknown field {key!r}" for key in entry if key not in _FIELDS]
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        problems.append(
            f"{where}: field 'name' must be 1 to 64 lower-case letters, digits, '_' or '-'"
        )
        name = None
    numbers = _numbers(entry.get("numbers"), where, problems)
    instructions = _optional_text(entry, "instructions", where, problems)
    greeting = _optional_text(entry, "greeting", where, problems)
    if greeting is not None and len(greeting) > MAX_GREETING_CHARS:
        problems.append(f"{where}: field 'greeting' is longer than {MAX_GREETING_CHARS} characters")
    voice = _optional_text(entry, "voice", where, problems)
    if voice is not None:
        try:
            check_voice(voice)
        except ValueError as exc:
            problems.append(f"{where}: field 'voice': {exc}")
    tools = entry.get("tools", [])
    if not isinstance(tools, list) or not all(isinstance(t, str) and t for t in tools):
        problems.append(f"{where}: field 'tools' must be a list of tool names from TOOLS_FILE")
        tools = []
    targets = _targets(entry.get("transfer_targets", {}), where, problems)
    warm = entry.get("warm_transfer", False)
    if not isinstance(warm, bool):
        problems.append(f"{where}: field 'warm_transfer' must be true or false")
    elif warm and not targets:
        problems.append(f"{where}: field 'warm_transfer' is true but there are no transfer_targets")
    duration = _number(entry, "max_call_duration", 0, 86_400, where, problems)
    tokens = _number(entry, "max_tokens_per_call", 0, 100_000_000, where, problems, whole=True)
    voicemail = _choice(entry, "voicemail", VOICEMAIL_POLICIES, where, problems)
    message = _optional_text(entry, "voicemail_message", where, problems)
    if message is not None and len(message) > MAX_GREETING_CHARS:
        problems.append(
            f"{where}: field 'voicemail_message' is longer than {MAX_GREETING_CHARS} characters"
        )
    if voicemail == "message" and message is None:
        problems.append(f"{where}: field 'voicemail' is message but there is no voicemail_message")
    undetermined = _choice(entry, "fax_or_unknown", UNDETERMINED_POLICIES, where, problems)
    record = entry.get("record", False)
    if not isinstance(record, bool):
        problems.append(f"{where}: field 'record' must be true or false")
    notice = _optional_text(entry, "recording_notice", where, problems)
    if name is None or numbers is None:
        return None
    return Agent(
        name=name,
        numbers=numbers,
        instructions=instructions,
        voice=voice,
        greeting=greeting,
        tools=tuple(dict.fromkeys(tools)),
        transfer_targets=targets,
        warm_transfer=warm is True,
        max_call_duration_s=None if duration is None else float(duration),
        max_tokens_per_call=None if tokens is None else int(tokens),
        voicemail=voicemail or "hangup",
        voicemail_message=message,
        fax_or_unknown=undetermined or "greet",
        record=record is True,
        recording_notice=notice,
    )


def _choice(
    entry: dict[str, Any], key: str, choices: tuple[str, ...], where: str, problems: list[str]
) -> str | None:
    value = entry.get(key)
    if value is None or value in choices:
        return value if isinstance(value, str) else None
    problems.append(f"{where}: field {key!r} must be one of " + ", ".join(choices))
    return None


def _numbers(value: object, where: str, problems: list[str]) -> tuple[str, ...] | None:
    if not isinstance(value, list) or not value:
        problems.append(
            f"{where}: field 'numbers' must be a list of E.164 numbers (+15005550006) or \"*\""
        )
        return None
    numbers: list[str] = []
    for number in value:
        if not isinstance(number, str) or not (number == ANY_NUMBER or is_e164(number)):
            quote = " (quote it: unquoted, YAML reads +1555… as a number)"
            problems.append(
                f"{where}: field 'numbers': {number!r} is not an E.164 number (+ then up to 15 "
                'digits, e.g. "+15005550006") or "*"' + (quote if isinstance(number, int) else "")
            )
        elif number in numbers:
            problems.append(f"{where}: field 'numbers': {number} is listed twice")
        else:
            numbers.append(number)
    return tuple(numbers)


def _targets(value: object, where: str, problems: list[str]) -> dict[str, str]:
    if not isinstance(value, dict):
        problems.append(f"{where}: field 'transfer_targets' must map names to numbers or sip: URIs")
        return {}
    targets: dict[str, str] = {}
    for name, address in value.items():
        if not isinstance(name, str) or not _TARGET_NAME.fullmatch(name):
            problems.append(
                f"{where}: field 'transfer_targets': name {name!r} must be 1 to 64 letters, "
                "digits, '_' or '-'"
            )
        elif not isinstance(address, str) or not (is_e164(address) or is_sip_uri(address)):
            problems.append(
                f"{where}: field 'transfer_targets': {name}: {address!r} is neither an E.164 "
                "number (+15005550007) nor a sip: URI (sip:sales@pbx.example.com)"
            )
        else:
            targets[name] = address
    return targets


def _optional_text(entry: dict[str, Any], key: str, where: str, problems: list[str]) -> str | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{where}: field {key!r} must be a non-empty string")
        return None
    return value


def _number(
    entry: dict[str, Any],
    key: str,
    low: int,
    high: int,
    where: str,
    problems: list[str],
    *,
    whole: bool = False,
) -> int | float | None:
    value = entry.get(key)
    if value is None:
        return None
    kind = int if whole else int | float
    if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
        what = "a whole number" if whole else "a number"
        problems.append(f"{where}: field {key!r} must be {what} from {low} to {high}")
        return None
    return value
