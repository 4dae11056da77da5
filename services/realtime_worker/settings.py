"""Settings of a realtime worker (``python -m services.realtime_worker``), read from the
environment at start-up."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from services.realtime_worker.tools import Tool, ToolsFile, load_tools
from services.realtime_worker.transcode import QUALITIES
from shared.agents import DEFAULT_AGENT, Agent, Agents, check_voice
from shared.config import (
    Settings,
    agents_file_var,
    boolean,
    call_record_retention_var,
    drain_timeout_var,
    float_in,
    int_in,
    key_prefix_var,
    log_level_var,
    one_of,
    optional_text,
    process_id,
    redis_batch_var,
    redis_cluster_var,
    redis_url_var,
    test_hooks_var,
    text,
    text_or_off,
    url,
    variable,
)

__all__ = [
    "DEFAULT_INSTRUCTIONS",
    "DEFAULT_REALTIME_MODEL",
    "DEFAULT_REALTIME_URL",
    "WorkerSettings",
]

DEFAULT_REALTIME_URL = "wss://api.openai.com/v1/realtime"
# gpt-realtime and gpt-realtime-mini have an announced shutdown of 2027-01-20
# (docs/protocols.md §3.1).
DEFAULT_REALTIME_MODEL = "gpt-realtime-2.1"
DEFAULT_INSTRUCTIONS = (
    "You are a friendly, concise assistant answering a phone call. Speak naturally, keep "
    "answers short, and ask one question at a time."
)


def _optional_http_url(raw: str) -> str | None:
    return str(url("https", "http")(raw)) if raw else None


def _tools_file(raw: str) -> ToolsFile | None:
    """The tools of a readable, valid tools file, parsed once, now: a bad file stops the worker
    at start-up (ToolsError is a ValueError naming the file, the tool and the field)."""
    if not raw:
        return None
    return ToolsFile(raw, load_tools(raw))


@dataclass(frozen=True, slots=True)
class WorkerSettings(Settings):
    """Settings of ``python -m services.realtime_worker``."""

    redis_url: str = redis_url_var()
    redis_cluster: bool = redis_cluster_var()
    redis_batch_ms: int = redis_batch_var()
    key_prefix: str = key_prefix_var()
    log_level: str = log_level_var()
    openai_api_key: str | None = variable(
        "OPENAI_API_KEY",
        None,
        optional_text,
        "API key for the Realtime API (sent as Authorization: Bearer). Not needed for a ws:// "
        "simulator URL.",
        secret=True,
    )
    realtime_url: str = variable(
        "OPENAI_REALTIME_URL",
        DEFAULT_REALTIME_URL,
        url("wss", "ws"),
        "Realtime WebSocket endpoint (GA protocol); ws:// only for a local simulator.",
    )
    realtime_model: str = variable(
        "OPENAI_REALTIME_MODEL",
        DEFAULT_REALTIME_MODEL,
        text,
        "Realtime model. Models are retired often: check OpenAI's deprecations page.",
    )
    voice: str = variable("VOICE", "marin", check_voice, "Voice of the model.")
    instructions: str = variable(
        "INSTRUCTIONS", DEFAULT_INSTRUCTIONS, text, "System prompt of every call."
    )
    transcription_model: str | None = variable(
        "TRANSCRIPTION_MODEL",
        "gpt-transcribe",
        text_or_off,
        "Model that transcribes the caller (logged and stored); off to switch off.",
    )
    max_calls: int = variable(
        "MAX_CALLS", "20", int_in(1, 10_000), "Calls one worker holds at once."
    )
    metrics_port: int = variable(
        "METRICS_PORT",
        "9100",
        int_in(0, 65535),
        "Port of the worker's /metrics and /livez, both answered by its event loop (0: off).",
    )
    worker_id: str = variable(
        "WORKER_ID", "", process_id, "Name of this worker process. Default: host-pid-random."
    )
    lease_ttl_ms: int = variable(
        "LEASE_TTL_MS",
        "3000",
        int_in(500, 60_000),
        "A call's lease lapses this long after its worker's last heartbeat.",
    )
    heartbeat_interval_ms: int = variable(
        "HEARTBEAT_INTERVAL_MS",
        "1000",
        int_in(100, 30_000),
        "How often a worker renews its leases; must be well under LEASE_TTL_MS.",
    )
    alive_ttl_ms: int = variable(
        "WORKER_ALIVE_TTL_MS",
        "1000",
        int_in(200, 60_000),
        "A worker's alive key lapses this long after its last renewal; edges then take the "
        "worker's calls from it (each lease revoked) and put them back in line for another "
        "worker. Most of the silence a caller hears when a worker dies.",
    )
    alive_interval_ms: int = variable(
        "WORKER_ALIVE_INTERVAL_MS",
        "250",
        int_in(50, 30_000),
        "How often a worker renews its alive key (one SET per worker, however many calls it "
        "holds); at most half of WORKER_ALIVE_TTL_MS, a quarter leaves room for a busy moment.",
    )
    stream_start_timeout_s: float = variable(
        "STREAM_START_TIMEOUT",
        "15",
        float_in(1, 300),
        "Seconds a worker waits for Twilio's stream to reach an edge before it drops the call.",
    )
    realtime_connect_timeout_s: float = variable(
        "REALTIME_CONNECT_TIMEOUT",
        "10",
        float_in(1, 120),
        "Seconds to open the Realtime WebSocket and have μ-law confirmed.",
    )
    realtime_reconnects: int = variable(
        "REALTIME_RECONNECTS",
        "3",
        int_in(0, 20),
        "Times a call's dropped Realtime session is reopened (seeded with the conversation so "
        "far) within one minute before the call ends with FAILURE_MESSAGE; 0: a dropped "
        "session ends the call.",
    )
    edge_grace_s: float = variable(
        "EDGE_GRACE",
        "15",
        float_in(1, 300),
        "Seconds a worker keeps a call whose Twilio stream dropped without a stop, waiting for "
        "Twilio to reconnect it through another edge.",
    )
    max_audio_delta_bytes: int = variable(
        "MAX_AUDIO_DELTA_BYTES",
        "131072",
        int_in(1024, 4_000_000),
        "Largest audio delta accepted from the Realtime server, in μ-law bytes (8000 per "
        "second; PCM16 deltas count by their duration; real deltas hold a fraction of one); "
        "larger ones are dropped and counted.",
    )
    session_max_s: float = variable(
        "SESSION_MAX",
        "3300",
        float_in(5, 3600),
        "Seconds after which a call moves to a fresh Realtime session (seeded with the "
        "conversation so far) at the next pause; the Realtime API caps sessions at 60 min.",
    )
    takeover_backlog_ms: int = variable(
        "TAKEOVER_BACKLOG_MS",
        "3000",
        int_in(0, 60_000),
        "When a worker takes over a call from a dead one: caller audio younger than this is "
        "sent to the new session; older unread audio is skipped.",
    )
    realtime_audio_format: str = variable(
        "REALTIME_AUDIO_FORMAT",
        "pcmu",
        one_of("pcmu", "pcm16"),
        "pcmu: G.711 μ-law end to end, nothing decoded (the OpenAI Realtime API). pcm16: only "
        "for Realtime-compatible backends without μ-law: the worker transcodes each call to "
        "PCM16 24 kHz and back (libsoxr), at some CPU and latency cost (docs/audio.md).",
    )
    transcode_quality: str = variable(
        "TRANSCODE_QUALITY",
        "HQ",
        one_of(*QUALITIES),
        "libsoxr quality recipe when REALTIME_AUDIO_FORMAT=pcm16: quicker ones hold back less "
        "audio, better ones reject more aliasing (figures in docs/audio.md).",
    )
    drain_mode: str = variable(
        "DRAIN_MODE",
        "handoff",
        one_of("handoff", "finish"),
        "On SIGTERM: handoff (release each call so another worker resumes it at once) or "
        "finish (keep calls until they end, up to DRAIN_TIMEOUT).",
    )
    drain_timeout_s: float = drain_timeout_var()
    vad: str = variable(
        "TURN_DETECTION",
        "server_vad",
        one_of("server_vad", "semantic_vad"),
        "How the model detects the end of the caller's turn.",
    )
    barge_in: bool = variable(
        "BARGE_IN",
        "true",
        boolean,
        "Let the caller interrupt the model: its reply stops at once (Twilio clear) and the "
        "model is told how much of it was heard (truncate).",
    )
    barge_in_min_heard_ms: int = variable(
        "BARGE_IN_MIN_HEARD_MS",
        "300",
        int_in(0, 10_000),
        "Milliseconds of a reply the caller must have heard before speaking interrupts it.",
    )
    dtmf: bool = variable(
        "DTMF",
        "true",
        boolean,
        "Tell the model which keys the caller presses, and let it answer.",
    )
    greeting: str = variable(
        "GREETING",
        "",
        text,
        "Instruction for the model to speak first when a call starts (e.g. 'Greet the caller "
        "and ask how you can help.'); empty: the caller speaks first. (An agent's greeting in "
        "AGENTS_FILE is the words themselves.)",
    )
    max_call_duration_s: float = variable(
        "MAX_CALL_DURATION",
        "0",
        float_in(0, 86_400),
        "Seconds after which the model is told to wrap up, and the call ends after its "
        "goodbye; 0: no limit.",
    )
    max_tokens_per_call: int = variable(
        "MAX_TOKENS_PER_CALL",
        "0",
        int_in(0, 100_000_000),
        "Tokens (input and output, all modalities) after which the model is told to wrap up, "
        "and the call ends after its goodbye; 0: no limit.",
    )
    call_record_retention_s: int = call_record_retention_var()
    tools_file: ToolsFile | None = variable(
        "TOOLS_FILE",
        "",
        _tools_file,
        "Path to a JSON file of function tools the model may call besides the built-in "
        "end_call: each with name, description, parameters (JSON schema), url (the worker "
        "POSTs the call sid and the arguments there) and optional timeout_s (default 5, at "
        "most 30); checked at start-up. Empty: no further tools.",
    )

    agents_file: Agents | None = agents_file_var()
    call_setup_url: str | None = variable(
        "CALL_SETUP_URL",
        "",
        _optional_http_url,
        "Set-up hook: the worker POSTs {call_sid, from, to, direction, agent} here as a call "
        "arrives, and may be answered JSON overriding the agent's instructions, greeting and "
        "variables for that call (README, 'Set-up hook'). Empty: off.",
    )
    call_setup_timeout_s: float = variable(
        "CALL_SETUP_TIMEOUT",
        "1",
        float_in(0.05, 10),
        "Seconds the set-up hook may take; then the agent's defaults are used (counted). The "
        "hook runs while the Realtime session opens, so it delays the call by at most this.",
    )
    test_hooks: bool = test_hooks_var()

    def _cross_checks(self) -> list[str]:
        problems = []
        if self.agents_file is not None:
            problems += self.agents_file.unknown_tools(tool.name for tool in self.tools)
        setup_s, connect_s = self.call_setup_timeout_s, self.realtime_connect_timeout_s
        if setup_s is not None and connect_s is not None and setup_s >= connect_s:
            problems.append(
                f"CALL_SETUP_TIMEOUT={self.call_setup_timeout_s:g} must be under "
                f"REALTIME_CONNECT_TIMEOUT={self.realtime_connect_timeout_s:g}: the session "
                "waits for the hook"
            )
        if not self.openai_api_key and not self.uses_local_simulator:
            problems.append(
                "OPENAI_API_KEY is not set: set it to your OpenAI API key (or point "
                "OPENAI_REALTIME_URL at a ws:// Realtime simulator)"
            )
        heartbeat, lease = self.heartbeat_interval_ms, self.lease_ttl_ms
        if heartbeat is not None and lease is not None and heartbeat * 2 > lease:
            problems.append(
                f"HEARTBEAT_INTERVAL_MS={self.heartbeat_interval_ms} must be at most half of "
                f"LEASE_TTL_MS={self.lease_ttl_ms}, or a busy worker loses its calls"
            )
        alive, alive_ttl = self.alive_interval_ms, self.alive_ttl_ms
        if alive is not None and alive_ttl is not None and alive * 2 > alive_ttl:
            problems.append(
                f"WORKER_ALIVE_INTERVAL_MS={alive} must be at most half of "
                f"WORKER_ALIVE_TTL_MS={alive_ttl}, or a busy worker loses its calls"
            )
        return problems

    @property
    def agents(self) -> Agents:
        """The agents of AGENTS_FILE; without one, one agent answering every number with
        the global settings and every tool of TOOLS_FILE."""
        return self.agents_file or Agents((Agent(DEFAULT_AGENT),))

    @property
    def tools(self) -> tuple[Tool, ...]:
        """The tools of TOOLS_FILE (none without one)."""
        return self.tools_file.tools if self.tools_file is not None else ()

    @property
    def uses_local_simulator(self) -> bool:
        """A plain ws:// URL cannot be OpenAI's; it is a simulator on a trusted network."""
        return urlsplit(self.realtime_url).scheme == "ws"
