"""Configuration: the one place that reads the environment.

Each setting is declared once, as a dataclass field carrying its environment variable, its
default, a parser and a one-line description. ``from_env`` parses every variable, collects all
the problems, and raises one ``ConfigError`` that names each variable and what is allowed. The
README's configuration table and ``.env.example`` are checked against these declarations by the
test suite, so they cannot drift.

Secrets (``secret=True``) never appear in ``repr`` or in ``describe()``, the start-up dump.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import urlsplit

from shared.errors import ConfigError

__all__ = [
    "DEFAULT_REALTIME_MODEL",
    "DEFAULT_REALTIME_URL",
    "EdgeSettings",
    "Variable",
    "WorkerSettings",
    "all_variables",
    "redact_url",
]

DEFAULT_REALTIME_URL = "wss://api.openai.com/v1/realtime"
# gpt-realtime and gpt-realtime-mini have an announced shutdown of 2027-01-20
# (docs/protocols.md §3.1).
DEFAULT_REALTIME_MODEL = "gpt-realtime-2.1"
DEFAULT_INSTRUCTIONS = (
    "You are a friendly, concise assistant answering a phone call. Speak naturally, keep "
    "answers short, and ask one question at a time."
)
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")

Parser = Callable[[str], Any]


@dataclass(frozen=True, slots=True)
class Variable:
    """One environment variable: its name, default (None: no default), and what it does."""

    name: str
    default: str | None
    help: str
    parse: Parser
    secret: bool = False


def _var(name: str, default: str | None, parse: Parser, help: str, secret: bool = False) -> Any:
    return dataclasses.field(
        metadata={"var": Variable(name, default, help, parse, secret)}, repr=not secret
    )


# --- parsers: each returns the value or raises ValueError with what is allowed -------------


def _text(raw: str) -> str:
    return raw


def _optional_text(raw: str) -> str | None:
    return raw or None


def _text_or_off(raw: str) -> str | None:
    return None if raw.lower() in ("off", "none") else raw


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _int_in(low: int, high: int) -> Parser:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"expected an integer from {low} to {high}") from None
        if not low <= value <= high:
            raise ValueError(f"expected an integer from {low} to {high}")
        return value

    return parse


def _float_in(low: float, high: float) -> Parser:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"expected a number from {low} to {high}") from None
        if not low <= value <= high:
            raise ValueError(f"expected a number from {low} to {high}")
        return value

    return parse


def _one_of(*choices: str) -> Parser:
    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError("expected one of " + ", ".join(choices))
        return raw

    return parse


def _admin_token(raw: str) -> str | None:
    if raw and len(raw) < 16:
        raise ValueError("expected at least 16 characters (e.g. openssl rand -hex 24)")
    return raw or None


def _tools_file(raw: str) -> str | None:
    """A readable, valid tools file (checked now, so a bad one stops the worker at start-up)."""
    if not raw:
        return None
    from services.realtime_worker.tools import load_tools  # the one place the format lives

    load_tools(raw)  # ToolsError is a ValueError naming the file, the tool and the field
    return raw


def _log_level(raw: str) -> str:
    level: str = _one_of(*_LOG_LEVELS)(raw.upper())
    return level


def _url(*schemes: str) -> Parser:
    def parse(raw: str) -> str:
        parts = urlsplit(raw)
        # unix:// (redis-py's local socket form) names a socket path instead of a host.
        located = parts.path if parts.scheme == "unix" else parts.hostname
        if parts.scheme not in schemes or not located:
            raise ValueError(f"expected a {' or '.join(schemes)} URL with a host")
        try:
            parts.port  # noqa: B018 - validates the port
        except ValueError:
            raise ValueError("the port is not a number from 0 to 65535") from None
        return raw

    return parse


def _public_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("expected the edge's public base URL, e.g. https://edge.example.com")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query string or fragment")
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when asked
    except ValueError:
        raise ValueError("has an invalid port: expected a number from 1 to 65535") from None
    return raw.rstrip("/")


def _key_prefix(raw: str) -> str:
    if not raw or any(c in raw for c in " *?[]{}"):
        raise ValueError("expected a non-empty name without spaces or glob characters")
    return raw


def _process_id(raw: str) -> str:
    if raw:
        return _key_prefix(raw)
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _voice(raw: str) -> str:
    if raw in _VOICES or raw.startswith("voice_"):
        return raw
    raise ValueError("expected one of " + ", ".join(_VOICES) + ", or a custom voice id voice_…")


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (for logs and errors)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:" if parts.username else ":"
    return parts._replace(netloc=f"{user}***@{netloc}").geturl()


# --- settings ------------------------------------------------------------------------------


def _redis_url() -> Any:
    return _var(
        "REDIS_URL",
        "redis://127.0.0.1:6379/0",
        _url("redis", "rediss", "unix"),
        "Redis holding the dispatch queue, call records and audio streams.",
        secret=True,  # may carry a password; shown redacted
    )


def _redis_batch_var() -> Any:
    return _var(
        "REDIS_BATCH_MS",
        "0",
        _int_in(0, 20),
        "Milliseconds the Redis writer and reader wait to gather more audio frames into each "
        "round trip. 0: none (lowest latency). 2 saves a fifth to nearly a third of edge, worker "
        "and Redis CPU at moderate load, for a few ms of round trip (README, Performance).",
    )


def _key_prefix_var() -> Any:
    return _var("KEY_PREFIX", "sb", _key_prefix, "Prefix of every Redis key (one per deployment).")


def _log_level_var() -> Any:
    return _var("LOG_LEVEL", "INFO", _log_level, "DEBUG, INFO, WARNING or ERROR.")


class _FromEnv:
    """``from_env`` and ``describe`` for the settings dataclasses below."""

    @classmethod
    def variables(cls) -> Iterator[tuple[str, Variable]]:
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            yield f.name, f.metadata["var"]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Parse settings from ``environ`` (default ``os.environ``).

        Raises ``ConfigError`` listing every variable that is missing or invalid.
        """
        env = os.environ if environ is None else environ
        # An empty variable counts as unset, as docker compose passes `VAR=` through.
        values: dict[str, Any] = {}
        problems: list[str] = []
        for attr, var in cls.variables():
            raw = env.get(var.name)
            if raw is None or (raw == "" and var.default not in (None, "")):
                raw = var.default
            if raw is None:
                values[attr] = None
                continue
            try:
                values[attr] = var.parse(raw.strip())
            except ValueError as exc:
                values[attr] = None
                shown = "(hidden)" if var.secret else repr(raw)
                problems.append(f"{var.name}={shown}: {exc}")
        settings = cls(**values)
        # A variable already reported as invalid is not "not set" as well.
        invalid = {problem.split("=", 1)[0] for problem in problems}
        problems.extend(p for p in settings._cross_checks() if p.split(" ", 1)[0] not in invalid)
        if problems:
            raise ConfigError(
                "invalid configuration:\n  " + "\n  ".join(problems) + "\n(see README.md, "
                "'Configuration', for every variable)"
            )
        return settings

    def _cross_checks(self) -> list[str]:
        return []

    def secret_values(self) -> list[str]:
        """Every secret this process holds, for the log formatter to mask: the secret
        variables, and the password inside REDIS_URL (not the whole URL, which is useful)."""
        values = []
        for attr, var in self.variables():
            value = getattr(self, attr)
            if var.name == "REDIS_URL":
                value = urlsplit(value).password if value else None
            elif not var.secret:
                continue
            if value:
                values.append(str(value))
        return values

    def describe(self) -> str:
        """One line for the start-up log: every setting, secrets shown only as set/unset."""
        parts = []
        for attr, var in self.variables():
            value = getattr(self, attr)
            if var.name == "REDIS_URL":
                shown = redact_url(value)
            elif var.secret:
                shown = "<set>" if value else "<unset>"
            elif var.name in ("INSTRUCTIONS", "GREETING"):
                shown = f"<{len(value)} chars>"
            else:
                shown = str(value)
            parts.append(f"{var.name}={shown}")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class EdgeSettings(_FromEnv):
    """Settings of ``python -m services.edge``."""

    redis_url: str = _redis_url()
    redis_batch_ms: int = _redis_batch_var()
    key_prefix: str = _key_prefix_var()
    log_level: str = _log_level_var()
    host: str = _var("HOST", "0.0.0.0", _text, "Interface the edge listens on.")
    port: int = _var("PORT", "8080", _int_in(1, 65535), "HTTP port of the edge.")
    public_url: str = _var(
        "PUBLIC_URL",
        None,
        _public_url,
        "Public base URL Twilio reaches the edge at (https://…); the stream URL (wss://…) and "
        "the URLs whose signatures are checked derive from it.",
    )
    twilio_auth_token: str | None = _var(
        "TWILIO_AUTH_TOKEN",
        None,
        _optional_text,
        "Twilio account auth token: checks X-Twilio-Signature on requests Twilio signs the "
        "legacy way (HMAC-SHA1, no X-Twilio-Webhooks-Signature-Settings header).",
        secret=True,
    )
    twilio_auth_token_previous: str | None = _var(
        "TWILIO_AUTH_TOKEN_PREVIOUS",
        None,
        _optional_text,
        "During an auth token rotation, the old token: signatures made with either token are "
        "accepted. Unset it once Twilio uses the new one.",
        secret=True,
    )
    twilio_webhook_shared_key: str | None = _var(
        "TWILIO_WEBHOOK_SHARED_KEY",
        None,
        _optional_text,
        "Secret of the Twilio SharedKey your Webhook Rules sign with: checks X-Twilio-Signature "
        "on requests carrying X-Twilio-Webhooks-Signature-Settings (HMAC-SHA256 or -SHA1, as "
        "the header says). Unset: such requests are refused.",
        secret=True,
    )
    twilio_webhook_shared_key_previous: str | None = _var(
        "TWILIO_WEBHOOK_SHARED_KEY_PREVIOUS",
        None,
        _optional_text,
        "During a shared key rotation, the old key's secret: signatures made with either key "
        "are accepted. Unset it once Twilio signs with the new one.",
        secret=True,
    )
    validate_signature: bool = _var(
        "TWILIO_VALIDATE_SIGNATURE",
        "true",
        _bool,
        "Refuse webhooks and streams without a valid Twilio signature. Only for local tests.",
    )
    stream_token_secret: str | None = _var(
        "STREAM_TOKEN_SECRET",
        None,
        _optional_text,
        "Key that signs per-call stream tokens; the same on every edge. Default: derived "
        "from TWILIO_AUTH_TOKEN; required without one (e.g. shared-key signing only).",
        secret=True,
    )
    stream_token_ttl_s: int = _var(
        "STREAM_TOKEN_TTL",
        "60",
        _int_in(5, 3600),
        "Seconds a stream token stays valid after the TwiML that carries it.",
    )
    drain_timeout_s: float = _var(
        "DRAIN_TIMEOUT",
        "30",
        _float_in(0, 3600),
        "On SIGTERM, seconds live calls may go on before the edge closes them.",
    )
    edge_id: str = _var(
        "EDGE_ID", "", _process_id, "Name of this edge process. Default: host-pid-random."
    )
    drain_response: str = _var(
        "DRAIN_RESPONSE",
        "say",
        _one_of("say", "reject"),
        "How a draining edge answers new calls: say (speak BUSY_MESSAGE, hang up) or reject "
        "(TwiML <Reject>: the caller hears busy).",
    )
    busy_message: str = _var(
        "BUSY_MESSAGE",
        "Sorry, we cannot take your call right now. Please call again in a few minutes.",
        _text,
        "What callers hear when no worker can take their call, or the edge is draining.",
    )
    failure_message: str = _var(
        "FAILURE_MESSAGE",
        "Sorry, something went wrong on our side and we have to end this call. Please call again.",
        _text,
        "What callers hear when their call cannot go on because the model's session failed.",
    )
    dispatch_timeout_s: float = _var(
        "DISPATCH_TIMEOUT",
        "10",
        _float_in(1, 120),
        "Seconds a call may wait for a worker; then the stream ends and the caller hears "
        "BUSY_MESSAGE.",
    )
    max_calls_per_edge: int = _var(
        "EDGE_MAX_CALLS",
        "500",
        _int_in(1, 100_000),
        "Live calls one edge takes; past it, new calls hear BUSY_MESSAGE.",
    )
    max_message_bytes: int = _var(
        "MAX_MESSAGE_BYTES",
        "16384",
        _int_in(1024, 1_048_576),
        "Largest WebSocket message accepted from Twilio (a 20 ms media message is ~400 bytes); "
        "larger ones are dropped and counted.",
    )
    media_burst_ms: int = _var(
        "MEDIA_BURST_MS",
        "2000",
        _int_in(100, 60_000),
        "How far a call's inbound media may run ahead of real time; frames beyond are dropped "
        "and counted (a flood cannot fill Redis).",
    )
    idle_timeout_s: float = _var(
        "IDLE_TIMEOUT",
        "15",
        _float_in(1, 600),
        "Seconds without any message from Twilio (or without a start message on a new socket) "
        "after which a media socket is closed; Twilio sends media every 20 ms.",
    )
    lease_check_interval_ms: int = _var(
        "LEASE_CHECK_INTERVAL_MS",
        "500",
        _int_in(100, 10_000),
        "How often the edge checks that each of its calls is still held by a live worker, "
        "and puts calls whose worker died back in line.",
    )
    admin_token: str | None = _var(
        "ADMIN_TOKEN",
        None,
        _admin_token,
        "Bearer token of the read API (GET /calls, GET /calls/{sid}); at least 16 characters. "
        "Unset: the read API is off (404).",
        secret=True,
    )

    def _cross_checks(self) -> list[str]:
        problems = []
        if self.public_url is None:
            problems.append(
                "PUBLIC_URL is not set: set it to the https URL Twilio reaches this edge at, "
                "e.g. PUBLIC_URL=https://edge.example.com"
            )
        if (
            self.validate_signature
            and not self.twilio_auth_token
            and not self.twilio_webhook_shared_key
        ):
            problems.append(
                "TWILIO_AUTH_TOKEN is not set, nor TWILIO_WEBHOOK_SHARED_KEY: set "
                "TWILIO_AUTH_TOKEN to your Twilio auth token (Console → Account → API keys & "
                "tokens) or TWILIO_WEBHOOK_SHARED_KEY to the secret of the SharedKey your "
                "Webhook Rules sign with (or both), or set TWILIO_VALIDATE_SIGNATURE=false for "
                "a local test"
            )
        if not self.stream_token_secret and not self.twilio_auth_token:
            problems.append(
                "STREAM_TOKEN_SECRET is not set and there is no TWILIO_AUTH_TOKEN to derive it "
                "from (a shared key is never used for it): set STREAM_TOKEN_SECRET to a long "
                "random string shared by all edges (openssl rand -hex 32)"
            )
        return problems


@dataclass(frozen=True, slots=True)
class WorkerSettings(_FromEnv):
    """Settings of ``python -m services.realtime_worker``."""

    redis_url: str = _redis_url()
    redis_batch_ms: int = _redis_batch_var()
    key_prefix: str = _key_prefix_var()
    log_level: str = _log_level_var()
    openai_api_key: str | None = _var(
        "OPENAI_API_KEY",
        None,
        _optional_text,
        "API key for the Realtime API (sent as Authorization: Bearer). Not needed for a ws:// "
        "simulator URL.",
        secret=True,
    )
    realtime_url: str = _var(
        "OPENAI_REALTIME_URL",
        DEFAULT_REALTIME_URL,
        _url("wss", "ws"),
        "Realtime WebSocket endpoint (GA protocol); ws:// only for a local simulator.",
    )
    realtime_model: str = _var(
        "OPENAI_REALTIME_MODEL",
        DEFAULT_REALTIME_MODEL,
        _text,
        "Realtime model. Models are retired often: check OpenAI's deprecations page.",
    )
    voice: str = _var("VOICE", "marin", _voice, "Voice of the model.")
    instructions: str = _var(
        "INSTRUCTIONS", DEFAULT_INSTRUCTIONS, _text, "System prompt of every call."
    )
    transcription_model: str | None = _var(
        "TRANSCRIPTION_MODEL",
        "gpt-transcribe",
        _text_or_off,
        "Model that transcribes the caller (logged and stored); off to switch off.",
    )
    max_calls: int = _var("MAX_CALLS", "20", _int_in(1, 10_000), "Calls one worker holds at once.")
    metrics_port: int = _var(
        "METRICS_PORT", "9100", _int_in(0, 65535), "Port of the worker's /metrics (0: off)."
    )
    worker_id: str = _var(
        "WORKER_ID", "", _process_id, "Name of this worker process. Default: host-pid-random."
    )
    lease_ttl_ms: int = _var(
        "LEASE_TTL_MS",
        "3000",
        _int_in(500, 60_000),
        "A call's lease lapses this long after its worker's last heartbeat.",
    )
    heartbeat_interval_ms: int = _var(
        "HEARTBEAT_INTERVAL_MS",
        "1000",
        _int_in(100, 30_000),
        "How often a worker renews its leases; must be well under LEASE_TTL_MS.",
    )
    stream_start_timeout_s: float = _var(
        "STREAM_START_TIMEOUT",
        "15",
        _float_in(1, 300),
        "Seconds a worker waits for Twilio's stream to reach an edge before it drops the call.",
    )
    realtime_connect_timeout_s: float = _var(
        "REALTIME_CONNECT_TIMEOUT",
        "10",
        _float_in(1, 120),
        "Seconds to open the Realtime WebSocket and have μ-law confirmed.",
    )
    realtime_reconnects: int = _var(
        "REALTIME_RECONNECTS",
        "3",
        _int_in(0, 20),
        "Times a call's dropped Realtime session is reopened (seeded with the conversation so "
        "far) within one minute before the call ends with FAILURE_MESSAGE; 0: a dropped "
        "session ends the call.",
    )
    edge_grace_s: float = _var(
        "EDGE_GRACE",
        "15",
        _float_in(1, 300),
        "Seconds a worker keeps a call whose Twilio stream dropped without a stop, waiting for "
        "Twilio to reconnect it through another edge.",
    )
    max_audio_delta_bytes: int = _var(
        "MAX_AUDIO_DELTA_BYTES",
        "131072",
        _int_in(1024, 4_000_000),
        "Largest audio delta accepted from the Realtime server, in μ-law bytes (8000 per "
        "second; PCM16 deltas count by their duration; real deltas hold a fraction of one); "
        "larger ones are dropped and counted.",
    )
    session_max_s: float = _var(
        "SESSION_MAX",
        "3300",
        _float_in(5, 3600),
        "Seconds after which a call moves to a fresh Realtime session (seeded with the "
        "conversation so far) at the next pause; the Realtime API caps sessions at 60 min.",
    )
    takeover_backlog_ms: int = _var(
        "TAKEOVER_BACKLOG_MS",
        "3000",
        _int_in(0, 60_000),
        "When a worker takes over a call from a dead one: caller audio younger than this is "
        "sent to the new session; older unread audio is skipped.",
    )
    realtime_audio_format: str = _var(
        "REALTIME_AUDIO_FORMAT",
        "pcmu",
        _one_of("pcmu", "pcm16"),
        "pcmu: G.711 μ-law end to end, nothing decoded (the OpenAI Realtime API). pcm16: only "
        "for Realtime-compatible backends without μ-law: the worker transcodes each call to "
        "PCM16 24 kHz and back (libsoxr), at some CPU and latency cost (README).",
    )
    transcode_quality: str = _var(
        "TRANSCODE_QUALITY",
        "HQ",
        _one_of("QQ", "LQ", "MQ", "HQ", "VHQ"),
        "libsoxr quality recipe when REALTIME_AUDIO_FORMAT=pcm16: quicker ones hold back less "
        "audio, better ones reject more aliasing (figures in the README).",
    )
    drain_mode: str = _var(
        "DRAIN_MODE",
        "handoff",
        _one_of("handoff", "finish"),
        "On SIGTERM: handoff (release each call so another worker resumes it at once) or "
        "finish (keep calls until they end, up to DRAIN_TIMEOUT).",
    )
    drain_timeout_s: float = _var(
        "DRAIN_TIMEOUT",
        "30",
        _float_in(0, 3600),
        "On SIGTERM with DRAIN_MODE=finish, seconds calls may go on before they are handed off.",
    )
    vad: str = _var(
        "TURN_DETECTION",
        "server_vad",
        _one_of("server_vad", "semantic_vad"),
        "How the model detects the end of the caller's turn.",
    )
    barge_in: bool = _var(
        "BARGE_IN",
        "true",
        _bool,
        "Let the caller interrupt the model: its reply stops at once (Twilio clear) and the "
        "model is told how much of it was heard (truncate).",
    )
    barge_in_min_heard_ms: int = _var(
        "BARGE_IN_MIN_HEARD_MS",
        "300",
        _int_in(0, 10_000),
        "Milliseconds of a reply the caller must have heard before speaking interrupts it.",
    )
    dtmf: bool = _var(
        "DTMF",
        "true",
        _bool,
        "Tell the model which keys the caller presses, and let it answer.",
    )
    greeting: str = _var(
        "GREETING",
        "",
        _text,
        "Instruction for the model to speak first when a call starts (e.g. 'Greet the caller "
        "and ask how you can help.'); empty: the caller speaks first.",
    )
    max_call_duration_s: float = _var(
        "MAX_CALL_DURATION",
        "0",
        _float_in(0, 86_400),
        "Seconds after which the model is told to wrap up, and the call ends after its "
        "goodbye; 0: no limit.",
    )
    max_tokens_per_call: int = _var(
        "MAX_TOKENS_PER_CALL",
        "0",
        _int_in(0, 100_000_000),
        "Tokens (input and output, all modalities) after which the model is told to wrap up, "
        "and the call ends after its goodbye; 0: no limit.",
    )
    call_record_retention_s: int = _var(
        "CALL_RECORD_RETENTION",
        "86400",
        _int_in(60, 90 * 86_400),
        "Seconds a call's record and transcript are kept after the call ends.",
    )
    tools_file: str | None = _var(
        "TOOLS_FILE",
        "",
        _tools_file,
        "Path to a JSON file of function tools the model may call besides the built-in "
        "end_call: each with name, description, parameters (JSON schema), url (the worker "
        "POSTs the call sid and the arguments there) and optional timeout_s (default 5, at "
        "most 30); checked at start-up. Empty: no further tools.",
    )

    def _cross_checks(self) -> list[str]:
        problems = []
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
        return problems

    @property
    def uses_local_simulator(self) -> bool:
        """A plain ws:// URL cannot be OpenAI's; it is a simulator on a trusted network."""
        return urlsplit(self.realtime_url).scheme == "ws"


def all_variables() -> dict[str, tuple[Variable, set[str]]]:
    """Every variable, with the services (``edge``, ``worker``) that read it."""
    table: dict[str, tuple[Variable, set[str]]] = {}
    for service, cls in (("edge", EdgeSettings), ("worker", WorkerSettings)):
        for _, var in cls.variables():
            table.setdefault(var.name, (var, set()))[1].add(service)
    return table


def reference_table() -> str:
    """The README's configuration table (Markdown), generated so the two cannot drift apart."""
    rows = [
        "| Variable | Read by | Default | What it does |",
        "|---|---|---|---|",
    ]
    for name, (var, services) in all_variables().items():
        default = f"`{var.default}`" if var.default else "—"
        note = " *Secret: never logged.*" if var.secret else ""
        rows.append(f"| `{name}` | {', '.join(sorted(services))} | {default} | {var.help}{note} |")
    return "\n".join(rows)
