"""The doctor's checks, sans I/O: each turns settings or what a probe saw into ``Check`` rows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from services.edge.settings import EdgeSettings
from services.edge.urls import PublicUrls
from services.realtime_worker.openai_protocol import PCM, PCM_RATE, PCMU, SessionConfirmed
from services.realtime_worker.settings import WorkerSettings
from shared.audio_check import AudioVerdict
from shared.config import redact_url
from shared.errors import ConfigError
from shared.redis_kind import redis_mismatch

__all__ = [
    "Check",
    "Status",
    "config_checks",
    "format_checks",
    "parse_config",
    "redis_check",
    "signature_checks",
    "tone_check",
]

Status = Literal["pass", "fail", "warn", "skip"]
Settings = EdgeSettings | WorkerSettings
MIN_REDIS = (6, 2)  # streams with XAUTOCLAIM


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the checklist; ``fix`` says what to change when it did not pass."""

    name: str
    status: Status
    summary: str
    fix: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _problems(error: ConfigError) -> list[str]:
    """The problem lines of ``from_env``'s error, each naming its variable."""
    lines = str(error).splitlines()
    return [line.strip() for line in lines if line.startswith("  ")] or [str(error)]


def parse_config(role: str, environ: Mapping[str, str]) -> tuple[Settings | None, list[Check]]:
    """``role``'s settings (None when invalid) and a check per configuration problem."""
    cls: type[Settings] = EdgeSettings if role == "edge" else WorkerSettings
    try:
        settings = cls.from_env(environ)
    except ConfigError as exc:
        checks = []
        for problem in _problems(exc):
            variable = problem.split("=", 1)[0].split(" ", 1)[0]
            # "VAR=value: what is allowed" or "VAR is not set: how to set it"
            what, _, fix = problem.partition(": ")
            if not fix:
                what, fix = problem, f"change {variable}"
            elif "=" in what.split(" ", 1)[0]:
                fix = f"{variable}: {fix}"
            checks.append(Check(f"config.{role}.{variable}", "fail", f"{role}: {what}", fix))
        return None, checks
    count = sum(1 for _ in cls.variables())
    return settings, [
        Check(f"config.{role}", "pass", f"{role} configuration: all {count} variables valid")
    ]


def config_checks(
    roles: list[str], environ: Mapping[str, str]
) -> tuple[dict[str, Settings | None], list[Check]]:
    settings: dict[str, Settings | None] = {}
    checks: list[Check] = []
    for role in roles:
        settings[role], found = parse_config(role, environ)
        checks += found
    return settings, checks


def redis_check(
    url: str, cluster: bool, info: Mapping[str, object] | None, error: str | None
) -> Check:
    """Whether Redis answered (``info``: its ``INFO``), is recent enough, and is the kind
    REDIS_CLUSTER (``cluster``) says (the services refuse a mismatch)."""
    where = redact_url(url)
    if error is not None or info is None:
        return Check(
            "redis",
            "fail",
            f"Redis at {where} does not answer: {error}",
            "check REDIS_URL (host, port, password, database) and that Redis runs and is "
            "reachable from here",
        )
    version = str(info.get("redis_version", "unknown"))
    refusal = redis_mismatch(url, cluster, info)
    if refusal is not None:
        return Check("redis", "fail", refusal, "set REDIS_CLUSTER to match the Redis you run")
    try:
        parsed = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        parsed = MIN_REDIS
    if parsed < MIN_REDIS:
        return Check(
            "redis",
            "fail",
            f"Redis at {where} is version {version}",
            f"upgrade Redis to {'.'.join(map(str, MIN_REDIS))} or later (streams, XAUTOCLAIM)",
        )
    return Check("redis", "pass", f"Redis at {where} answers, version {version}")


def signature_checks(settings: EdgeSettings) -> list[Check]:
    """Twilio signature settings against PUBLIC_URL (docs/protocols.md §2.3)."""
    checks = []
    parts = urlsplit(settings.public_url)
    urls = PublicUrls(settings.public_url)
    if parts.scheme != "https":
        checks.append(
            Check(
                "signature.public_url",
                "fail",
                f"PUBLIC_URL={settings.public_url} is not https: Twilio needs a wss:// stream URL",
                "set PUBLIC_URL to the https:// address Twilio reaches the edge at",
            )
        )
    elif parts.path not in ("", "/") or parts.port is not None:
        checks.append(
            Check(
                "signature.public_url",
                "warn",
                f"PUBLIC_URL has a path or port: Twilio signs {urls.voice} and {urls.media} "
                "exactly as written",
                "the proxy in front must strip the path prefix and Twilio's Voice URL must be "
                f"exactly {urls.voice}; drop the prefix or port if neither is meant",
            )
        )
    else:
        checks.append(
            Check(
                "signature.public_url",
                "pass",
                f"PUBLIC_URL is https; set the number's Voice URL to {urls.voice}",
            )
        )
    if not settings.validate_signature:
        checks.append(
            Check(
                "signature.validate",
                "fail",
                "TWILIO_VALIDATE_SIGNATURE=false: anyone can place calls and open streams",
                "unset TWILIO_VALIDATE_SIGNATURE (default true) outside local tests",
            )
        )
    else:
        checks.append(_signing_modes(settings))
    return checks


def _with_previous(name: str, previous: str | None) -> str:
    return f"{name} and {name}_PREVIOUS (a rotation)" if previous else name


def _signing_modes(settings: EdgeSettings) -> Check:
    """Which of Twilio's two signing modes this edge can check, and what it refuses."""
    modes = []
    if settings.twilio_auth_token:
        token = _with_previous("TWILIO_AUTH_TOKEN", settings.twilio_auth_token_previous)
        modes.append(f"auth token, HMAC-SHA1 ({token})")
    if settings.twilio_webhook_shared_key:
        key = _with_previous(
            "TWILIO_WEBHOOK_SHARED_KEY", settings.twilio_webhook_shared_key_previous
        )
        modes.append(f"shared key, as X-Twilio-Webhooks-Signature-Settings names it ({key})")
    summary = "Twilio signatures are checked: " + "; ".join(modes)
    if not settings.twilio_webhook_shared_key:
        return Check(
            "signature.validate",
            "pass",
            summary + "; requests signed with a shared key are refused",
        )
    if not settings.twilio_auth_token:
        return Check(
            "signature.validate",
            "warn",
            summary + "; requests Twilio signs with the auth token are refused",
            "Twilio signs with the shared key only where a Webhook Rule matches the URL: set "
            "TWILIO_AUTH_TOKEN as well, unless Rules cover every URL of the edge (voice, "
            "resume, stream status and the media stream)",
        )
    return Check("signature.validate", "pass", summary)


def format_checks(
    confirmed: SessionConfirmed | None, rejection: str | None, audio_format: str = PCMU
) -> Check:
    """The formats the server confirmed after our ``session.update`` (``audio_format``: what
    the worker asks for, PCMU or, with REALTIME_AUDIO_FORMAT=pcm16, PCM 24 kHz)."""
    wanted = f"{PCMU} both ways" if audio_format == PCMU else f"{PCM} {PCM_RATE} Hz both ways"
    fix = (
        f"the server at OPENAI_REALTIME_URL must honour session.update with {wanted} "
        "(docs/protocols.md §3.3): use the OpenAI Realtime GA endpoint, or a compatible server "
        "that speaks G.711 μ-law"
    )
    if rejection is not None:
        return Check("realtime.formats", "fail", f"session.update refused: {rejection}", fix)
    if confirmed is None:
        return Check("realtime.formats", "fail", "no session.updated came back", fix)
    shown = f"input {confirmed.input_format}, output {confirmed.output_format}"
    if confirmed.speaks(audio_format):
        transcoding = "" if audio_format == PCMU else " (the worker transcodes: pcm16 mode)"
        return Check("realtime.formats", "pass", f"session.updated confirms {shown}{transcoding}")
    if audio_format == PCMU and confirmed.speaks(PCM):
        fix += (
            "; or, for a backend that speaks only PCM16 24 kHz, set REALTIME_AUDIO_FORMAT=pcm16 "
            "so that the worker transcodes"
        )
    return Check(
        "realtime.formats",
        "fail",
        f"session.updated confirms {shown}, not {wanted}: callers would hear noise",
        fix,
    )


def tone_check(verdict: AudioVerdict | None, error: str | None = None) -> Check:
    """The reply to the test tone, through the outbound-audio detector."""
    if verdict is None:
        return Check(
            "realtime.tone",
            "fail",
            f"no reply audio to the test tone{': ' + error if error else ''}",
            "check OPENAI_REALTIME_MODEL can answer in audio, and the server's error above",
        )
    if verdict.is_fault:
        return Check("realtime.tone", "fail", f"reply audio: {verdict.explanation}", verdict.fix)
    if verdict.kind == "silence":
        return Check("realtime.tone", "warn", f"reply audio: {verdict.explanation}", verdict.fix)
    return Check(
        "realtime.tone", "pass", f"reply audio is μ-law ({verdict.bytes_examined} bytes checked)"
    )
