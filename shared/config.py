"""Configuration: how settings are declared, read from the environment and checked.

Each service declares its settings beside its code (``services/edge/settings.py``,
``services/realtime_worker/settings.py``) as a frozen dataclass whose fields carry their
environment variable, default, parser and one-line description (``variable``). ``from_env``
parses every variable, collects all the problems, and raises one ``ConfigError`` that names each
variable and what is allowed. A variable both services read is declared once, here (the
``*_var`` functions), so it has one meaning. ``docs/configuration.md`` and ``.env.example`` are
generated from the declarations (``make generate``), so they cannot drift.

Secrets (``secret=True``) never appear in ``repr`` or in ``describe()``, the start-up dump.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

from shared.agents import Agents, load_agents
from shared.errors import ConfigError
from shared.resp import check_url_options

__all__ = [
    "Parser",
    "Settings",
    "Variable",
    "agents_file_var",
    "boolean",
    "call_record_retention_var",
    "drain_timeout_var",
    "float_in",
    "int_in",
    "key_prefix",
    "key_prefix_var",
    "log_level_var",
    "one_of",
    "optional_text",
    "process_id",
    "redact_url",
    "redis_batch_var",
    "redis_cluster_var",
    "redis_url_var",
    "text",
    "test_hooks_var",
    "text_or_off",
    "url",
    "variable",
    "writable_directory",
]

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

Parser = Callable[[str], Any]


@dataclass(frozen=True, slots=True)
class Variable:
    """One environment variable: its name, default (None: no default), and what it does."""

    name: str
    default: str | None
    help: str
    parse: Parser
    secret: bool = False


def variable(name: str, default: str | None, parse: Parser, help: str, secret: bool = False) -> Any:
    return dataclasses.field(
        metadata={"var": Variable(name, default, help, parse, secret)}, repr=not secret
    )


# --- parsers: each returns the value or raises ValueError with what is allowed -------------


def text(raw: str) -> str:
    return raw


def optional_text(raw: str) -> str | None:
    return raw or None


def text_or_off(raw: str) -> str | None:
    return None if raw.lower() in ("off", "none") else raw


def boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def writable_directory(raw: str) -> Path | None:
    """An existing directory this process can create files in (tried, not guessed: a mounted
    volume may refuse what its mode bits allow); None when empty."""
    if not raw:
        return None
    path = Path(raw)
    if not path.is_dir():
        raise ValueError("expected an existing directory (a mounted volume), or empty for off")
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ValueError(f"cannot create files there: {exc.strerror or exc}") from None
    return path


def int_in(low: int, high: int) -> Parser:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"expected an integer from {low} to {high}") from None
        if not low <= value <= high:
            raise ValueError(f"expected an integer from {low} to {high}")
        return value

    return parse


def float_in(low: float, high: float) -> Parser:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"expected a number from {low} to {high}") from None
        if not low <= value <= high:
            raise ValueError(f"expected a number from {low} to {high}")
        return value

    return parse


def one_of(*choices: str) -> Parser:
    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError("expected one of " + ", ".join(choices))
        return raw

    return parse


def _log_level(raw: str) -> str:
    level: str = one_of(*_LOG_LEVELS)(raw.upper())
    return level


def url(*schemes: str) -> Parser:
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


def key_prefix(raw: str) -> str:
    if not raw or any(c in raw for c in " *?[]{}"):
        raise ValueError("expected a non-empty name without spaces or glob characters")
    return raw


def process_id(raw: str) -> str:
    if raw:
        return key_prefix(raw)
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (for logs and errors)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:" if parts.username else ":"
    return parts._replace(netloc=f"{user}***@{netloc}").geturl()


# --- settings ------------------------------------------------------------------------------


def _redis_url(raw: str) -> str:
    """A Redis URL whose every option both of a process's Redis clients honour."""
    value: str = url("redis", "rediss", "unix")(raw)
    check_url_options(value)
    return value


def redis_url_var() -> Any:
    return variable(
        "REDIS_URL",
        "redis://127.0.0.1:6379/0",
        _redis_url,
        "Redis holding the dispatch queue, call records and audio streams: one Redis (a "
        "primary, with replicas if you like), or with REDIS_CLUSTER=true any node of a Redis "
        "Cluster. Query options "
        "(rediss:// TLS with ssl_ca_certs, ssl_certfile, ssl_keyfile, ssl_check_hostname…; "
        "socket_timeout, socket_connect_timeout, socket_keepalive, client_name) apply to every "
        "connection; an option the audio path cannot honour is refused at start-up.",
        secret=True,  # may carry a password; shown redacted
    )


def redis_cluster_var() -> Any:
    return variable(
        "REDIS_CLUSTER",
        "false",
        boolean,
        "true: REDIS_URL names a node of a Redis Cluster (its database must be 0), and each "
        "call's keys share one hash slot (docs/scaling.md). Every edge and worker of a "
        "deployment must agree; a mismatch with the Redis found is refused at start-up.",
    )


def redis_batch_var() -> Any:
    return variable(
        "REDIS_BATCH_MS",
        "0",
        int_in(0, 20),
        "Milliseconds the Redis writer and reader wait to gather more audio frames into each "
        "round trip. 0: none (lowest latency). 2 saves a fifth to nearly a third of edge, worker "
        "and Redis CPU at moderate load, for a few ms of round trip (docs/performance.md).",
    )


def key_prefix_var() -> Any:
    return variable(
        "KEY_PREFIX", "sb", key_prefix, "Prefix of every Redis key (one per deployment)."
    )


def drain_timeout_var() -> Any:
    return variable(
        "DRAIN_TIMEOUT",
        "30",
        float_in(0, 3600),
        "On SIGTERM, seconds live calls may go on: an edge then closes its streams (Twilio's "
        "<Redirect> moves each call to another edge); a worker with DRAIN_MODE=finish then "
        "hands its remaining calls to other workers.",
    )


def call_record_retention_var() -> Any:
    return variable(
        "CALL_RECORD_RETENTION",
        "86400",
        int_in(60, 90 * 86_400),
        "Seconds a call's record and transcript are kept after the call ends; the edge deletes "
        "the call's own recording (RECORDINGS_DIR) this long after it was last written to.",
    )


def _agents_file(raw: str) -> Agents | None:
    """The agents of a readable, valid agents file, parsed once, now (AgentsError is a
    ValueError listing every problem); None without one."""
    return load_agents(raw) if raw else None


def agents_file_var() -> Any:
    return variable(
        "AGENTS_FILE",
        "",
        _agents_file,
        "Path to a YAML (or JSON) file of agents: which dialed numbers each answers, with its "
        "instructions, voice, greeting, tools and transfer targets (README, 'Agents'). Edges and "
        "workers must read the same file. Empty: one agent, configured by INSTRUCTIONS, VOICE, "
        "GREETING and TOOLS_FILE, answers every number.",
    )


def log_level_var() -> Any:
    return variable("LOG_LEVEL", "INFO", _log_level, "DEBUG, INFO, WARNING or ERROR.")


def test_hooks_var() -> Any:
    return variable(
        "SWITCHBOARD_TEST_HOOKS",
        "false",
        boolean,
        "Test-only; never set it in production. true: the private port (the edge's ADMIN_PORT, "
        "the worker's METRICS_PORT) also answers POST /test/block-loop?seconds=N by blocking "
        "the event loop for N seconds (at most 60), and a worker also serves /metrics from a "
        "thread on a port it logs, as workers did before /livez: the liveness tests use both.",
    )


class Settings:
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
                "invalid configuration:\n  " + "\n  ".join(problems) + "\n(see "
                "docs/configuration.md for every variable)"
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
