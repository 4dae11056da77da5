"""Every Redis name Switchboard uses, and the bounds on each.

No other module formats a key. All names start with a configurable prefix (``KEY_PREFIX``,
default ``sb``) so several deployments, or a test run, can share one Redis without touching
each other's data.

| key                          | type              | purpose                                   |
|------------------------------|-------------------|-------------------------------------------|
| ``{p}:calls:dispatch``       | stream + group    | calls waiting for a worker                |
| ``{p}:call:{sid}``           | hash              | the call record (fields: ``CallField``)   |
| ``{p}:call:{sid}:in``        | stream            | edge → worker: audio, marks, dtmf, stop   |
| ``{p}:call:{sid}:out``       | stream            | worker → edge: audio, marks, clear, hangup|
| ``{p}:call:{sid}:lease``     | string, PX ttl    | id of the worker holding the call         |
| ``{p}:call:{sid}:turns``     | list (JSON items) | the conversation so far, last TURNS_MAX   |
| ``{p}:proc:{id}:wake``       | stream            | wakes one process's blocking reader       |
| ``{p}:proc:{id}:alive``      | string, PX ttl    | a worker's event loop is turning          |
| ``{p}:calls:recent``         | sorted set        | call sids by start time, last RECENT_MAX  |

On a Redis Cluster (``REDIS_CLUSTER``) every call belongs to one of ``CLUSTER_GROUPS`` slot
groups, fixed by its sid, and its keys carry the group's hash tag so that they share one slot:
``{p}:{g7}:call:{sid}``, ``…:in`` and so on. A process's wake stream is then one per group,
``{p}:{g7}:proc:{id}:wake``, read together with that group's streams, and a worker's alive key
is one per group too, ``{p}:{g7}:proc:{id}:alive``. Global keys (dispatch, recent calls,
outbound slots) are single keys, each used alone. docs/scaling.md explains the layout.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "CALL_KEY_TTL_S",
    "CLUSTER_GROUPS",
    "DISPATCH_MAXLEN",
    "ENDED_STREAM_TTL_S",
    "INBOUND_MAXLEN",
    "OUTBOUND_MAXLEN",
    "RECENT_CALLS_MAX",
    "TURNS_MAX",
    "WAKE_MAXLEN",
    "WAKE_TTL_S",
    "WORKER_GROUP",
    "CallField",
    "CallState",
    "Keys",
    "by_hash_tag",
    "hash_tag",
]

WORKER_GROUP = "workers"

# Streams are trimmed approximately (XADD MAXLEN ~), so these are lower bounds on what is kept.
DISPATCH_MAXLEN = 10_000
INBOUND_MAXLEN = 3_000  # about 60 s of 20 ms frames: the backlog a replacement worker can read
OUTBOUND_MAXLEN = 3_000
WAKE_MAXLEN = 16
TURNS_MAX = 200  # conversation turns kept per call: what a new Realtime session is seeded with
RECENT_CALLS_MAX = 1_000  # calls listed by the read API; older ones drop out of the index

# A live call's keys are refreshed well inside this TTL; a process that dies without cleaning
# up leaves nothing behind for longer than this.
CALL_KEY_TTL_S = 600
ENDED_STREAM_TTL_S = 60  # audio streams linger briefly after the end, for late readers
WAKE_TTL_S = 3600

#: Slot groups on a Redis Cluster: a few times the primaries of most clusters (3 to 8), so the
#: groups spread over them, and few enough that one blocking read per group stays cheap. Every
#: process of a deployment must agree on it, so it is a constant, not a setting.
CLUSTER_GROUPS = 24


class CallState(StrEnum):
    """Lifecycle of a call record (``CallField.STATE``)."""

    # An outbound call (POST /calls): Twilio accepted it, then rings the number. A worker
    # pre-warms its session meanwhile.
    QUEUED = "queued"
    RINGING = "ringing"
    DISPATCHED = "dispatched"  # webhook answered (or back from a transfer); waiting for a
    # worker and the stream
    LIVE = "live"  # the stream is attached to an edge
    TRANSFERRED = "transferred"  # the AI handed the call to a person; Twilio is dialing them
    ENDED = "ended"
    # How an outbound call that was never answered ended (Twilio's CallStatus).
    NO_ANSWER = "no-answer"
    BUSY = "busy"
    FAILED = "failed"


#: The states a call record never leaves.
FINAL_STATES: frozenset[CallState] = frozenset(
    {CallState.ENDED, CallState.NO_ANSWER, CallState.BUSY, CallState.FAILED}
)


class CallField(StrEnum):
    """Field names of the call record hash."""

    STATE = "state"
    FROM = "from"
    TO = "to"
    ACCOUNT_SID = "account_sid"
    DIRECTION = "direction"  # inbound (or outbound, for calls Switchboard places)
    AGENT = "agent"  # the name of the agent answering the call (AGENTS_FILE)
    SETUP = "setup"  # the set-up hook's answer (JSON), for a worker taking the call over
    CREATED_MS = "created_ms"
    ENDED_MS = "ended_ms"
    END_REASON = "end_reason"
    EDGE_ID = "edge_id"
    STREAM_SID = "stream_sid"
    WORKER_ID = "worker_id"
    INPUT_FORMAT = "input_format"
    OUTPUT_FORMAT = "output_format"
    BYTES_IN = "bytes_in"  # μ-law bytes the caller sent that the edge accepted
    BYTES_OUT = "bytes_out"  # μ-law bytes the edge sent to Twilio
    ERROR = "error"
    IN_CURSOR = "in_cursor"  # last inbound entry the worker relayed (worker takeover)
    OUT_CURSOR = "out_cursor"  # last outbound entry an edge sent to Twilio (edge failover)
    AUDIO_CHECK = "audio_check"  # the edge's verdict on the call's first outbound audio
    # The summary a worker writes when the call ends (counters are HINCRBY: a call taken over
    # by another worker keeps counting).
    DURATION_MS = "duration_ms"
    ENDED_BY = "ended_by"  # caller, model, limit, transfer, edge or error
    BARGE_INS = "barge_ins"
    ERRORS = "errors"  # Realtime error events and failures during the call
    RECONNECTS = "reconnects"  # Realtime sessions reopened after one dropped
    TOKENS_INPUT_TEXT = "tokens_input_text"
    TOKENS_INPUT_AUDIO = "tokens_input_audio"
    TOKENS_OUTPUT_TEXT = "tokens_output_text"
    TOKENS_OUTPUT_AUDIO = "tokens_output_audio"
    # A transfer to a person: the worker writes where to, the edge how the dial went.
    TRANSFER_TARGET = "transfer_target"  # the agent's name for the person
    TRANSFERRED_TO = "transferred_to"  # the E.164 number or sip: URI dialed
    TRANSFER_SUMMARY = "transfer_summary"  # what the model told the person (warm transfer)
    TRANSFER_WARM = "transfer_warm"  # 1: the person hears the summary first
    TRANSFER_STATUS = "transfer_status"  # Twilio's DialCallStatus
    # An outbound call: what it was placed with, and how Twilio reported it going.
    VARIABLES = "variables"  # JSON: name → text, filled into the instructions and greeting
    MACHINE_DETECTION = "machine_detection"  # 1: the model waits for answered_by
    RING_TIMEOUT = "ring_timeout"  # seconds Twilio rings before no-answer
    ANSWERED_BY = "answered_by"  # AMD's verdict: human, machine_end_beep, fax, unknown…
    AMD_MS = "amd_ms"  # how long detection took (MachineDetectionDuration)
    CALL_STATUS = "call_status"  # Twilio's last CallStatus (completed, no-answer, busy…)
    TWILIO_ERROR = "twilio_error"  # Twilio's ErrorCode, when it gave one
    RINGING_MS = "ringing_ms"
    ANSWERED_MS = "answered_ms"
    COMPLETED_MS = "completed_ms"
    CALL_DURATION = "call_duration"  # seconds, Twilio's CallDuration
    # Twilio's recording of the call (an agent with record: true).
    RECORDING_SID = "recording_sid"
    RECORDING_URL = "recording_url"
    RECORDING_STATUS = "recording_status"
    RECORDING_DURATION = "recording_duration"

    @classmethod
    def tokens(cls, direction: str, modality: str) -> CallField:
        """The token counter for ``direction`` (input/output) and ``modality`` (text/audio)."""
        return cls(f"tokens_{direction}_{modality}")


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one prefix; ``clustered``: per-call keys in slot groups (Redis
    Cluster)."""

    prefix: str = "sb"
    clustered: bool = False

    def call(self, call_sid: str) -> str:
        """The call record; the call's other keys are named after it."""
        if not self.clustered:
            return f"{self.prefix}:call:{call_sid}"
        return f"{self.prefix}:{{{self.group_of(call_sid)}}}:call:{call_sid}"

    @staticmethod
    def group_of(call_sid: str) -> str:
        """The call's slot group: its hash tag on a cluster (crc32, stable across processes
        and versions, unlike ``hash``)."""
        return f"g{zlib.crc32(call_sid.encode()) % CLUSTER_GROUPS}"

    @property
    def dispatch(self) -> str:
        return f"{self.prefix}:calls:dispatch"

    def inbound(self, call_sid: str) -> str:
        return f"{self.call(call_sid)}:in"

    def outbound(self, call_sid: str) -> str:
        return f"{self.call(call_sid)}:out"

    def lease(self, call_sid: str) -> str:
        return f"{self.call(call_sid)}:lease"

    def turns(self, call_sid: str) -> str:
        return f"{self.call(call_sid)}:turns"

    @property
    def recent_calls(self) -> str:
        return f"{self.prefix}:calls:recent"

    @property
    def outbound_active(self) -> str:
        """Outbound calls placed and not over, across all edges (a sorted set: call sid or
        placement id → when its slot lapses), for OUTBOUND_MAX_CONCURRENT."""
        return f"{self.prefix}:calls:outbound"

    def wake(self, process_id: str) -> str:
        """The wake stream of a process on one Redis."""
        return f"{self.prefix}:proc:{process_id}:wake"

    def reader_wake(self, process_id: str) -> str | Callable[[str], str]:
        """What a process's ``FanInReader`` wakes on: its one stream on one Redis; on a
        cluster, for each stream it reads, the stream of that stream's slot group."""
        if not self.clustered:
            return self.wake(process_id)
        return functools.partial(self.wake_for, process_id)

    def wake_for(self, process_id: str, stream: str) -> str:
        """The wake stream read together with ``stream`` (a call's stream): on a cluster, the
        process's stream in that call's slot group, so one read covers the group."""
        tag = hash_tag(stream)
        if not self.clustered or tag is None:
            return self.wake(process_id)
        return f"{self.prefix}:{{{tag}}}:proc:{process_id}:wake"

    def alive(self, worker_id: str, group: str | None = None) -> str:
        """Set by the worker every WORKER_ALIVE_INTERVAL_MS with a short TTL: once it lapses,
        the edges take that worker's calls from it (``shared.leases``). On a cluster there is
        one per slot ``group``, on the primary of the calls it vouches for: a primary that
        dies silences only its own calls, not every call of the workers whose key it held."""
        if group is None:
            return f"{self.prefix}:proc:{worker_id}:alive"
        return f"{self.prefix}:{{{group}}}:proc:{worker_id}:alive"

    def slot_group(self, call_sid: str) -> str | None:
        """The call's slot group on a cluster; None on one Redis, which has none."""
        return self.group_of(call_sid) if self.clustered else None

    def alive_for(self, worker_id: str, call_sid: str) -> str:
        """The alive key that vouches for ``worker_id`` serving ``call_sid``."""
        return self.alive(worker_id, self.slot_group(call_sid))

    def alive_groups(self) -> tuple[str | None, ...]:
        """The groups a worker keeps an alive key in: every slot group on a cluster (none
        is left for a call claimed a moment later to find missing), the one key otherwise."""
        if not self.clustered:
            return (None,)
        return tuple(f"g{n}" for n in range(CLUSTER_GROUPS))

    def call_keys(self, call_sid: str) -> tuple[str, str, str, str]:
        """The record, both audio streams and the turns of a call (the lease has its own TTL)."""
        return (
            self.call(call_sid),
            self.inbound(call_sid),
            self.outbound(call_sid),
            self.turns(call_sid),
        )

    def pattern(self) -> str:
        """A SCAN pattern matching every key under this prefix."""
        return f"{self.prefix}:*"


def hash_tag(key: str) -> str | None:
    """The hash tag of ``key`` as Redis Cluster reads it (the text between its first ``{``
    and the next ``}``, if not empty), or None."""
    start = key.find("{")
    if start < 0:
        return None
    end = key.find("}", start + 1)
    if end <= start + 1:
        return None
    return key[start + 1 : end]


def by_hash_tag(keys: Iterable[str]) -> list[list[int]]:
    """The positions of ``keys`` grouped by hash tag, first-seen order: one group per slot
    group on a cluster, a single group for untagged keys (one Redis)."""
    groups: dict[str | None, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(hash_tag(key), []).append(index)
    return list(groups.values())
