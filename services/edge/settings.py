"""Settings of the edge (``python -m services.edge``), read from the environment at start-up."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from shared.agents import DEFAULT_AGENT, Agent, Agents, is_e164
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
    url,
    variable,
    writable_directory,
)

__all__ = ["EdgeSettings"]


def _admin_token(raw: str) -> str | None:
    if raw and len(raw) < 16:
        raise ValueError("expected at least 16 characters (e.g. openssl rand -hex 24)")
    return raw or None


def _account_sid(raw: str) -> str | None:
    if raw and not re.fullmatch(r"AC[0-9a-f]{32}", raw):
        raise ValueError("expected your Twilio Account SID: AC followed by 32 hex digits")
    return raw or None


def _api_key_sid(raw: str) -> str | None:
    if raw and not re.fullmatch(r"SK[0-9a-f]{32}", raw):
        raise ValueError("expected a Twilio API key SID: SK followed by 32 hex digits")
    return raw or None


def _prefixes(raw: str) -> tuple[str, ...]:
    prefixes = tuple(p.strip() for p in raw.split(",") if p.strip())
    for prefix in prefixes:
        if not re.fullmatch(r"\+[0-9]{1,15}", prefix):
            raise ValueError(f"{prefix!r} is not a number prefix: expected e.g. +1,+44")
    return prefixes


def _caller_id(raw: str) -> str | None:
    if raw and not is_e164(raw):
        raise ValueError("expected an E.164 number (+15005550006) or empty")
    return raw or None


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


@dataclass(frozen=True, slots=True)
class EdgeSettings(Settings):
    """Settings of ``python -m services.edge``."""

    redis_url: str = redis_url_var()
    redis_cluster: bool = redis_cluster_var()
    redis_batch_ms: int = redis_batch_var()
    key_prefix: str = key_prefix_var()
    log_level: str = log_level_var()
    host: str = variable("HOST", "0.0.0.0", text, "Interface the edge listens on.")
    port: int = variable(
        "PORT",
        "8080",
        int_in(1, 65535),
        "Public HTTP port of the edge: only Twilio's routes (/twilio/…); any other path "
        "answers 404.",
    )
    admin_host: str | None = variable(
        "ADMIN_HOST",
        "",
        optional_text,
        "Interface of ADMIN_PORT. Empty: the same as HOST.",
    )
    admin_port: int = variable(
        "ADMIN_PORT",
        "8081",
        int_in(1, 65535),
        "Private HTTP port of the edge: /metrics, /livez, /healthz, /readyz, the read API and "
        "call control; /twilio/… answers 404 here. Keep it off the internet (SECURITY.md).",
    )
    public_url: str = variable(
        "PUBLIC_URL",
        None,
        _public_url,
        "Public base URL Twilio reaches the edge at (https://…); the stream URL (wss://…) and "
        "the URLs whose signatures are checked derive from it.",
    )
    twilio_auth_token: str | None = variable(
        "TWILIO_AUTH_TOKEN",
        None,
        optional_text,
        "Twilio account auth token: checks X-Twilio-Signature on requests Twilio signs the "
        "legacy way (HMAC-SHA1, no X-Twilio-Webhooks-Signature-Settings header).",
        secret=True,
    )
    twilio_auth_token_previous: str | None = variable(
        "TWILIO_AUTH_TOKEN_PREVIOUS",
        None,
        optional_text,
        "During an auth token rotation, the old token: signatures made with either token are "
        "accepted. Unset it once Twilio uses the new one.",
        secret=True,
    )
    twilio_webhook_shared_key: str | None = variable(
        "TWILIO_WEBHOOK_SHARED_KEY",
        None,
        optional_text,
        "Secret of the Twilio SharedKey your Webhook Rules sign with: checks X-Twilio-Signature "
        "on requests carrying X-Twilio-Webhooks-Signature-Settings (HMAC-SHA256 or -SHA1, as "
        "the header says). Unset: such requests are refused.",
        secret=True,
    )
    twilio_webhook_shared_key_previous: str | None = variable(
        "TWILIO_WEBHOOK_SHARED_KEY_PREVIOUS",
        None,
        optional_text,
        "During a shared key rotation, the old key's secret: signatures made with either key "
        "are accepted. Unset it once Twilio signs with the new one.",
        secret=True,
    )
    validate_signature: bool = variable(
        "TWILIO_VALIDATE_SIGNATURE",
        "true",
        boolean,
        "Refuse webhooks and streams without a valid Twilio signature. Only for local tests.",
    )
    stream_token_secret: str | None = variable(
        "STREAM_TOKEN_SECRET",
        None,
        optional_text,
        "Key that signs per-call stream tokens; the same on every edge. Default: derived "
        "from TWILIO_AUTH_TOKEN; required without one (e.g. shared-key signing only).",
        secret=True,
    )
    stream_token_ttl_s: int = variable(
        "STREAM_TOKEN_TTL",
        "60",
        int_in(5, 3600),
        "Seconds a stream token stays valid after the TwiML that carries it.",
    )
    drain_timeout_s: float = drain_timeout_var()
    edge_id: str = variable(
        "EDGE_ID", "", process_id, "Name of this edge process. Default: host-pid-random."
    )
    drain_response: str = variable(
        "DRAIN_RESPONSE",
        "say",
        one_of("say", "reject"),
        "How a draining edge answers new calls: say (speak BUSY_MESSAGE, hang up) or reject "
        "(TwiML <Reject>: the caller hears busy).",
    )
    busy_message: str = variable(
        "BUSY_MESSAGE",
        "Sorry, we cannot take your call right now. Please call again in a few minutes.",
        text,
        "What callers hear when no worker can take their call, or the edge is draining.",
    )
    failure_message: str = variable(
        "FAILURE_MESSAGE",
        "Sorry, something went wrong on our side and we have to end this call. Please call again.",
        text,
        "What callers hear when their call cannot go on because the model's session failed.",
    )
    dispatch_timeout_s: float = variable(
        "DISPATCH_TIMEOUT",
        "10",
        float_in(1, 120),
        "Seconds a call may wait for a worker; then the stream ends and the caller hears "
        "BUSY_MESSAGE.",
    )
    max_calls_per_edge: int = variable(
        "EDGE_MAX_CALLS",
        "500",
        int_in(1, 100_000),
        "Live calls one edge takes; past it, new calls hear BUSY_MESSAGE.",
    )
    max_message_bytes: int = variable(
        "MAX_MESSAGE_BYTES",
        "16384",
        int_in(1024, 1_048_576),
        "Largest WebSocket message accepted from Twilio (a 20 ms media message is ~400 bytes); "
        "larger ones are dropped and counted.",
    )
    media_burst_ms: int = variable(
        "MEDIA_BURST_MS",
        "2000",
        int_in(100, 60_000),
        "How far a call's inbound media may run ahead of real time; frames beyond are dropped "
        "and counted (a flood cannot fill Redis).",
    )
    idle_timeout_s: float = variable(
        "IDLE_TIMEOUT",
        "15",
        float_in(1, 600),
        "Seconds without any message from Twilio (or without a start message on a new socket) "
        "after which a media socket is closed; Twilio sends media every 20 ms.",
    )
    lease_check_interval_ms: int = variable(
        "LEASE_CHECK_INTERVAL_MS",
        "500",
        int_in(100, 10_000),
        "How often the edge checks each of its calls' leases (one read per call): a call whose "
        "lease stays missing is put back in line, one no worker takes in DISPATCH_TIMEOUT ends.",
    )
    worker_check_interval_ms: int = variable(
        "WORKER_CHECK_INTERVAL_MS",
        "250",
        int_in(50, 10_000),
        "How often the edge checks the alive keys of the workers serving its calls (one read "
        "per worker); a call whose worker's key lapsed is taken from it and put back in line.",
    )
    test_hooks: bool = test_hooks_var()
    agents_file: Agents | None = agents_file_var()
    transfer_caller_id: str | None = variable(
        "TRANSFER_CALLER_ID",
        "",
        _caller_id,
        "Caller ID the person sees when the AI transfers a call (one of your Twilio numbers, "
        "E.164). Empty: the caller's own number.",
    )
    transfer_ring_timeout_s: int = variable(
        "TRANSFER_RING_TIMEOUT",
        "30",
        int_in(5, 600),
        "Seconds a transfer rings the person before it counts as not answered (<Dial timeout>); "
        "the caller then comes back to the AI.",
    )
    admin_token: str | None = variable(
        "ADMIN_TOKEN",
        None,
        _admin_token,
        "Bearer token of the read API (GET /calls, GET /calls/{sid}); at least 16 characters. "
        "Unset: the read API is off (404).",
        secret=True,
    )
    recordings_dir: Path | None = variable(
        "RECORDINGS_DIR",
        "",
        writable_directory,
        "Directory (a volume shared by every edge) where the edge records each call as the "
        "caller heard it: the caller's audio and the model's as played, cut where a barge-in "
        "cut it (docs/recordings.md); GET /calls/{sid}/recording serves it as a stereo WAV. "
        "Must exist and be writable. Empty: not recorded.",
    )
    call_record_retention_s: int = call_record_retention_var()
    api_token: str | None = variable(
        "API_TOKEN",
        None,
        _admin_token,
        "Bearer token that may place calls (POST /calls): it spends money, keep it apart from "
        "ADMIN_TOKEN; at least 16 characters. Unset: POST /calls is off (404).",
        secret=True,
    )
    twilio_account_sid: str | None = variable(
        "TWILIO_ACCOUNT_SID",
        "",
        _account_sid,
        "Your Twilio Account SID (AC…), needed to place calls (POST /calls).",
    )
    twilio_api_key_sid: str | None = variable(
        "TWILIO_API_KEY_SID",
        "",
        _api_key_sid,
        "A Twilio API key (SK…) to place calls with instead of TWILIO_AUTH_TOKEN; set "
        "TWILIO_API_KEY_SECRET with it.",
    )
    twilio_api_key_secret: str | None = variable(
        "TWILIO_API_KEY_SECRET",
        "",
        optional_text,
        "The secret of TWILIO_API_KEY_SID.",
        secret=True,
    )
    twilio_api_base_url: str = variable(
        "TWILIO_API_BASE_URL",
        "https://api.twilio.com",
        url("https", "http"),
        "Address of Twilio's REST API; change it only to point at a stand-in (the call "
        "simulator's, in tests and the demo).",
    )
    outbound_allowed_prefixes: tuple[str, ...] = variable(
        "OUTBOUND_ALLOWED_PREFIXES",
        "",
        _prefixes,
        "Comma-separated number prefixes POST /calls may dial (e.g. +1,+44); other numbers are "
        "refused (422). Empty: any E.164 number.",
    )
    outbound_max_concurrent: int = variable(
        "OUTBOUND_MAX_CONCURRENT",
        "20",
        int_in(1, 100_000),
        "Outbound calls placed and not yet over, across all edges (counted in Redis); POST "
        "/calls beyond it answers 429.",
    )
    outbound_ring_timeout_s: int = variable(
        "OUTBOUND_RING_TIMEOUT",
        "30",
        int_in(5, 600),
        "Seconds Twilio lets an outbound call ring before it counts as no-answer (Timeout).",
    )

    @property
    def agents(self) -> Agents:
        """The agents of AGENTS_FILE; without one, one agent answering every number."""
        return self.agents_file or Agents((Agent(DEFAULT_AGENT),))

    @property
    def admin_bind_host(self) -> str:
        """The interface ADMIN_PORT listens on: ADMIN_HOST, else HOST."""
        return self.admin_host or self.host

    def _cross_checks(self) -> list[str]:
        problems = []
        if self.port is not None and self.port == self.admin_port:
            problems.append(
                f"ADMIN_PORT and PORT are both {self.port}: the private admin port (metrics, "
                "health, the read API, call control) must differ from the public one Twilio "
                "reaches, e.g. ADMIN_PORT=8081"
            )
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
        problems += self._outbound_checks()
        return problems

    def _outbound_checks(self) -> list[str]:
        problems = []
        if bool(self.twilio_api_key_sid) != bool(self.twilio_api_key_secret):
            problems.append(
                "TWILIO_API_KEY_SID and TWILIO_API_KEY_SECRET go together: set both, or neither"
            )
        if self.api_token is None:
            return problems
        if self.api_token == self.admin_token:
            problems.append(
                "API_TOKEN equals ADMIN_TOKEN: the token that places calls must not be the "
                "read-only one; make API_TOKEN a different random string"
            )
        if not self.twilio_account_sid:
            problems.append(
                "API_TOKEN is set (POST /calls is on) but TWILIO_ACCOUNT_SID is not: set it to "
                "your Account SID (AC…) so calls can be placed"
            )
        if not self.twilio_auth_token and not self.twilio_api_key_sid:
            problems.append(
                "API_TOKEN is set (POST /calls is on) but there are no credentials to place "
                "calls with: set TWILIO_AUTH_TOKEN, or TWILIO_API_KEY_SID and "
                "TWILIO_API_KEY_SECRET"
            )
        return problems

    @property
    def places_calls(self) -> bool:
        """POST /calls is on (its cross-checks passed at start-up)."""
        return self.api_token is not None
