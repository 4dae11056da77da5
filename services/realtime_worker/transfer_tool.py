"""The built-in ``transfer_call`` tool: hand the caller to a person. Pure.

Offered to the model when the call's agent has ``transfer_targets``. Its arguments name one of
them and give the person a short summary; a valid call becomes a ``Transfer`` that the worker
carries out (the handoff sentence is heard, the record says where to, the stream closes, and
the edge answers ``<Dial>``); an invalid one is answered with an error and the call goes on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "MAX_SUMMARY_CHARS",
    "RETURN_CUE",
    "TRANSFER_CALL",
    "Transfer",
    "handoff_cue",
    "parse_transfer",
    "transfer_tool",
]

TRANSFER_CALL: Final = "transfer_call"
MAX_SUMMARY_CHARS: Final = 600  # the person hears it read out (warm transfer)


@dataclass(frozen=True, slots=True)
class Transfer:
    target: str  # the name the agent gave it
    address: str  # E.164 number or sip: URI
    summary: str
    warm: bool


def transfer_tool(targets: Mapping[str, str]) -> dict[str, Any]:
    """The tool's GA ``session.tools`` entry for an agent's targets."""
    return {
        "type": "function",
        "name": TRANSFER_CALL,
        "description": (
            "Transfer the caller to a person. Use it when the caller asks for a person or "
            "needs something you cannot do. The call moves to the person after you have told "
            "the caller you are connecting them; you leave the call."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "target": {
                    "type": "string",
                    "enum": sorted(targets),
                    "description": "Who to transfer the caller to.",
                },
                "summary": {
                    "type": "string",
                    "description": (
                        "One or two sentences for the person taking the call: who is calling "
                        "and what they need."
                    ),
                },
            },
            "required": ["target", "summary"],
            "additionalProperties": False,
        },
    }


def parse_transfer(arguments: str, targets: Mapping[str, str], warm: bool) -> Transfer | str:
    """The transfer the model asked for, or what is wrong with its arguments (the tool
    error the model is answered with)."""
    try:
        data = json.loads(arguments or "{}")
    except ValueError:
        return "the arguments are not JSON"
    if not isinstance(data, dict):
        return "the arguments must be an object with target and summary"
    target, summary = data.get("target"), data.get("summary", "")
    if not isinstance(target, str) or target not in targets:
        known = ", ".join(sorted(targets)) or "none"
        return f"there is no transfer target {str(target)[:64]!r}; the targets are: {known}"
    if not isinstance(summary, str):
        return "summary must be a string"
    summary = " ".join(summary.split())[:MAX_SUMMARY_CHARS]
    return Transfer(target, targets[target], summary, warm)


#: The response instruction for a call back from a transfer that did not go through (the note
#: saying why is the last turn the new session is seeded with).
RETURN_CUE: Final = (
    "The transfer did not go through. Tell the caller so in one short sentence, and offer to "
    "keep helping them."
)


def handoff_cue(transfer: Transfer) -> str:
    """The response instruction for the handoff sentence, when the model has not said one."""
    return (
        f"Tell the caller in one short sentence that you are transferring them to "
        f"{transfer.target} now. The call then moves to that person."
    )
