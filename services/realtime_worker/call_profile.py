"""How one call is served: its agent's settings, the set-up hook's overrides, the variables
filled in. Pure: the worker builds a ``CallProfile`` once per call and every part of the call
reads it (the session's configuration, the greeting, the goodbye's persona, the caps, the
tools, the transfer targets).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from services.realtime_worker.settings import WorkerSettings
from services.realtime_worker.tools import Tool
from shared.agents import Agent

__all__ = ["CallParty", "CallProfile", "SetupOverrides", "call_profile", "fill_variables"]

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]{0,63})\}")


@dataclass(frozen=True, slots=True)
class CallParty:
    """Who the call is between, from its record: the variables every agent may use."""

    call_sid: str
    caller: str = ""  # Twilio's From
    called: str = ""  # Twilio's To
    direction: str = "inbound"
    placed_with: Mapping[str, str] = field(default_factory=dict)  # POST /calls' variables

    def variables(self) -> dict[str, str]:
        return {
            **self.placed_with,
            "call_sid": self.call_sid,
            "caller": self.caller,
            "called": self.called,
            "direction": self.direction,
        }


@dataclass(frozen=True, slots=True)
class SetupOverrides:
    """What the set-up hook answered for one call (each field optional)."""

    instructions: str | None = None
    greeting: str | None = None
    variables: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallProfile:
    agent: str
    instructions: str
    voice: str
    greeting_cue: str  # the response instruction for the first words; empty: caller first
    tools: tuple[Tool, ...]
    transfer_targets: Mapping[str, str]
    warm_transfer: bool
    max_call_duration_s: float
    max_tokens_per_call: int
    variables: Mapping[str, str] = field(default_factory=dict)  # as filled in; shown to tools
    # An outbound call's answer (machine detection): the agent's policies, the words filled in.
    voicemail: str = "hangup"
    voicemail_message: str = ""
    fax_or_unknown: str = "greet"


def fill_variables(text: str, variables: Mapping[str, str]) -> str:
    """``text`` with each ``{name}`` whose name is a variable replaced by its value; other
    braces (JSON examples, unknown names) are left as written."""
    return _PLACEHOLDER.sub(lambda m: variables.get(m.group(1), m.group(0)), text)


def greeting_cue(words: str) -> str:
    """The response instruction that makes the model open the call with ``words``."""
    return f'Open the call by saying exactly this, and nothing more: "{words}"'


def call_profile(
    settings: WorkerSettings,
    agent: Agent,
    party: CallParty,
    overrides: SetupOverrides | None = None,
    tools: Sequence[Tool] = (),
) -> CallProfile:
    """The call's profile: the agent's fields, the global settings where it has none, the
    hook's overrides over both; variables (the call's own, then the hook's) filled in.
    ``tools``: those of TOOLS_FILE, of which the agent offers the ones it names."""
    overrides = overrides or SetupOverrides()
    variables = {"agent": agent.name, **party.variables(), **overrides.variables}
    instructions = overrides.instructions or agent.instructions or settings.instructions
    words = overrides.greeting or agent.greeting
    if words is not None:
        cue = greeting_cue(fill_variables(words, variables))
    else:
        cue = settings.greeting  # GREETING: an instruction, not the words themselves
    offered = (
        tuple(tools)
        if agent.tools is None
        else tuple(tool for tool in tools if tool.name in agent.tools)
    )
    duration = agent.max_call_duration_s
    tokens = agent.max_tokens_per_call
    return CallProfile(
        agent=agent.name,
        instructions=fill_variables(instructions, variables),
        voice=agent.voice or settings.voice,
        greeting_cue=cue,
        tools=offered,
        transfer_targets=dict(agent.transfer_targets),
        warm_transfer=agent.warm_transfer,
        max_call_duration_s=settings.max_call_duration_s if duration is None else duration,
        max_tokens_per_call=settings.max_tokens_per_call if tokens is None else tokens,
        variables=variables,
        voicemail=agent.voicemail,
        voicemail_message=fill_variables(agent.voicemail_message or "", variables),
        fax_or_unknown=agent.fax_or_unknown,
    )
