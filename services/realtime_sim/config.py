"""What a simulated session does: its mode, its canned reply, and the behaviours switched on."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from .failures import Failures
from .faults import Fault
from .reply import DEFAULT_CALLER_TRANSCRIPT, DEFAULT_REPLY_TEXT, default_reply_audio
from .vad import VadSettings
from .values import AllowList

__all__ = ["BehaviourConfig", "Mode"]


class Mode(StrEnum):
    ECHO = "echo"  # every appended chunk comes straight back as one audio delta
    CONVERSATION = "conversation"  # VAD turns, answered with the canned reply


@dataclass(frozen=True, slots=True)
class BehaviourConfig:
    mode: Mode = Mode.CONVERSATION
    reply_audio: bytes = field(default_factory=default_reply_audio, repr=False)
    reply_text: str = DEFAULT_REPLY_TEXT
    caller_transcript: str = DEFAULT_CALLER_TRANSCRIPT
    speed: float = 4.0  # reply pacing, in multiples of real time
    seed: int = 0  # delta sizes
    vad: VadSettings = VadSettings()
    min_delta_bytes: int = 800
    max_delta_bytes: int = 4000
    fault: Fault = Fault.NONE  # misbehave on purpose (faults.py)
    # A Realtime-compatible backend without μ-law: its sessions stay audio/pcm 24 kHz
    # (REALTIME_AUDIO_FORMAT=pcm16 on the worker). Echo mode sends the PCM back unchanged.
    serves_pcm16: bool = False
    # From this caller turn on (0: never), answer by calling the session's end_call function
    # tool, if it declares one, instead of speaking: the model hanging up.
    end_call_after: int = 0
    # At the first caller turn, answer by calling this function tool of the session (if it
    # declares it) with these arguments (JSON text); the reply follows the function's output.
    call_tool: str | None = None
    tool_arguments: str = "{}"
    failures: Failures = Failures()  # drops, the session cap, server errors (failures.py)
    # Input transcription finishes after the reply, as it may on the real server: a caller
    # turn's transcript follows the response.done of the response that answered it.
    late_transcripts: bool = False
    # response.cancel ends the response this much later; until then it is still active.
    cancel_delay_ms: int = 20
    allow: AllowList = AllowList()  # model names accepted beyond the SDK's lists
