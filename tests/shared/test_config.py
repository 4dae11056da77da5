"""Settings from the environment: defaults, errors that name the fix, no secrets shown."""

from __future__ import annotations

import re

import pytest

from services.config_catalog import all_variables
from services.edge.settings import EdgeSettings
from services.realtime_worker.settings import (
    DEFAULT_REALTIME_MODEL,
    DEFAULT_REALTIME_URL,
    WorkerSettings,
)
from shared.config import redact_url
from shared.errors import ConfigError

API_KEY = "sk-proj-SECRETSECRETSECRET"
AUTH_TOKEN = "twilio-auth-token-0123456789"
TOKEN_SECRET = "stream-token-secret-abcdef"
REDIS_PASSWORD = "hunter2-redis-pass"

EDGE_ENV = {"PUBLIC_URL": "https://edge.example.com", "TWILIO_AUTH_TOKEN": AUTH_TOKEN}
WORKER_ENV = {"OPENAI_API_KEY": API_KEY}


def _error(cls: type[EdgeSettings] | type[WorkerSettings], env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        cls.from_env(env)
    return str(info.value)


# --- worker ---------------------------------------------------------------------------------


def test_worker_defaults() -> None:
    s = WorkerSettings.from_env(WORKER_ENV)
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.key_prefix == "sb"
    assert s.log_level == "INFO"
    assert s.openai_api_key == API_KEY
    assert s.realtime_url == DEFAULT_REALTIME_URL == "wss://api.openai.com/v1/realtime"
    assert s.realtime_model == DEFAULT_REALTIME_MODEL
    assert s.voice == "marin"
    assert s.instructions
    assert s.transcription_model
    assert s.max_calls == 20
    assert s.metrics_port == 9100
    assert s.lease_ttl_ms == 3000
    assert s.heartbeat_interval_ms == 1000
    assert s.stream_start_timeout_s == 15.0
    assert s.realtime_connect_timeout_s == 10.0
    assert s.edge_grace_s == 15.0
    assert s.realtime_reconnects == 3
    assert s.vad == "server_vad"
    assert s.worker_id  # generated
    assert not s.uses_local_simulator


def test_worker_values_are_parsed() -> None:
    s = WorkerSettings.from_env(
        {
            **WORKER_ENV,
            "REDIS_URL": "rediss://redis.internal:6380/2",
            "KEY_PREFIX": "test1",
            "LOG_LEVEL": "debug",
            "OPENAI_REALTIME_MODEL": "gpt-realtime-2",
            "VOICE": "voice_1234",
            "TRANSCRIPTION_MODEL": "off",
            "MAX_CALLS": " 5 ",
            "METRICS_PORT": "0",
            "WORKER_ID": "w1",
            "LEASE_TTL_MS": "10000",
            "HEARTBEAT_INTERVAL_MS": "5000",
            "STREAM_START_TIMEOUT": "2.5",
            "TURN_DETECTION": "semantic_vad",
        }
    )
    assert s.redis_url == "rediss://redis.internal:6380/2"
    assert s.key_prefix == "test1"
    assert s.log_level == "DEBUG"
    assert s.realtime_model == "gpt-realtime-2"
    assert s.voice == "voice_1234"
    assert s.transcription_model is None
    assert s.max_calls == 5
    assert s.metrics_port == 0
    assert s.worker_id == "w1"
    assert (s.lease_ttl_ms, s.heartbeat_interval_ms) == (10000, 5000)
    assert s.stream_start_timeout_s == 2.5
    assert s.vad == "semantic_vad"


def test_worker_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("MAX_CALLS", "7")
    assert WorkerSettings.from_env().max_calls == 7


def test_empty_variable_counts_as_unset() -> None:
    s = WorkerSettings.from_env({**WORKER_ENV, "MAX_CALLS": "", "VOICE": "", "LOG_LEVEL": ""})
    assert (s.max_calls, s.voice, s.log_level) == (20, "marin", "INFO")


def test_generated_worker_ids_differ() -> None:
    ids = {WorkerSettings.from_env(WORKER_ENV).worker_id for _ in range(3)}
    assert len(ids) == 3


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("REDIS_URL", "http://redis:6379", "expected a redis or rediss or unix URL"),
        ("REDIS_URL", "redis://", "with a host"),
        ("REDIS_URL", "redis://host:99999/0", "port is not a number from 0 to 65535"),
        ("KEY_PREFIX", "my prefix", "without spaces or glob characters"),
        ("KEY_PREFIX", "sb*", "without spaces or glob characters"),
        ("LOG_LEVEL", "TRACE", "expected one of DEBUG, INFO, WARNING, ERROR"),
        ("OPENAI_REALTIME_URL", "https://api.openai.com/v1/realtime", "expected a wss or ws URL"),
        ("OPENAI_REALTIME_URL", "wss://", "with a host"),
        ("VOICE", "nova", "expected one of alloy, "),
        ("MAX_CALLS", "0", "expected an integer from 1 to 10000"),
        ("MAX_CALLS", "many", "expected an integer from 1 to 10000"),
        ("MAX_CALLS", "2.5", "expected an integer from 1 to 10000"),
        ("METRICS_PORT", "65536", "expected an integer from 0 to 65535"),
        ("WORKER_ID", "a b", "without spaces"),
        ("LEASE_TTL_MS", "100", "expected an integer from 500 to 60000"),
        ("HEARTBEAT_INTERVAL_MS", "50", "expected an integer from 100 to 30000"),
        ("STREAM_START_TIMEOUT", "0.5", "expected a number from 1 to 300"),
        ("STREAM_START_TIMEOUT", "nan", "expected a number from 1 to 300"),
        ("REALTIME_CONNECT_TIMEOUT", "soon", "expected a number from 1 to 120"),
        ("EDGE_GRACE", "inf", "expected a number from 1 to 300"),
        ("TURN_DETECTION", "none", "expected one of server_vad, semantic_vad"),
    ],
)
def test_worker_invalid_value_names_variable_and_allowed_values(
    name: str, value: str, allowed: str
) -> None:
    message = _error(WorkerSettings, {**WORKER_ENV, name: value})
    line = next(line for line in message.splitlines() if line.strip().startswith(name))
    assert allowed in line
    if name != "REDIS_URL":  # a secret: its value is never echoed
        assert repr(value) in line


def test_invalid_redis_url_is_not_echoed() -> None:
    url = f"http://:{REDIS_PASSWORD}@redis:6379"
    message = _error(WorkerSettings, {**WORKER_ENV, "REDIS_URL": url})
    assert "REDIS_URL=(hidden)" in message
    assert REDIS_PASSWORD not in message


def test_redis_unix_socket_url_is_accepted() -> None:
    # redis-py's form for a local socket: no host, the socket's path.
    s = WorkerSettings.from_env({**WORKER_ENV, "REDIS_URL": "unix:///run/redis/redis.sock?db=1"})
    assert s.redis_url == "unix:///run/redis/redis.sock?db=1"
    assert "unix" in _error(WorkerSettings, {**WORKER_ENV, "REDIS_URL": "unix://"})


def test_worker_all_problems_reported_at_once() -> None:
    message = _error(
        WorkerSettings,
        {"MAX_CALLS": "0", "VOICE": "nova", "LOG_LEVEL": "loud", "EDGE_GRACE": "x"},
    )
    for name in ("MAX_CALLS", "VOICE", "LOG_LEVEL", "EDGE_GRACE", "OPENAI_API_KEY"):
        assert re.search(rf"^\s+{name}", message, re.MULTILINE), name
    assert "docs/configuration.md" in message


def test_worker_requires_api_key_for_openai() -> None:
    message = _error(WorkerSettings, {})
    assert "OPENAI_API_KEY is not set" in message
    assert "ws://" in message  # says how to use the simulator instead
    assert "OPENAI_API_KEY is not set" in _error(WorkerSettings, {"OPENAI_API_KEY": ""})
    assert "OPENAI_API_KEY is not set" in _error(WorkerSettings, {"OPENAI_API_KEY": "   "})
    # A wss:// URL anywhere is treated as a real server: it needs the key.
    assert "OPENAI_API_KEY" in _error(
        WorkerSettings, {"OPENAI_REALTIME_URL": "wss://sim.local:9000/v1/realtime"}
    )


def test_worker_ws_simulator_needs_no_api_key() -> None:
    s = WorkerSettings.from_env({"OPENAI_REALTIME_URL": "ws://127.0.0.1:9000/v1/realtime"})
    assert s.uses_local_simulator
    assert s.openai_api_key is None


def test_heartbeat_must_be_at_most_half_the_lease() -> None:
    message = _error(
        WorkerSettings, {**WORKER_ENV, "LEASE_TTL_MS": "3000", "HEARTBEAT_INTERVAL_MS": "1600"}
    )
    assert "HEARTBEAT_INTERVAL_MS=1600 must be at most half of LEASE_TTL_MS=3000" in message
    s = WorkerSettings.from_env(
        {**WORKER_ENV, "LEASE_TTL_MS": "3000", "HEARTBEAT_INTERVAL_MS": "1500"}
    )
    assert s.heartbeat_interval_ms == 1500


def test_worker_describe_and_repr_hide_secrets() -> None:
    s = WorkerSettings.from_env(
        {
            "OPENAI_API_KEY": API_KEY,
            "REDIS_URL": f"redis://default:{REDIS_PASSWORD}@redis.internal:6379/0",
            "INSTRUCTIONS": "Be nice. Secret plan: none.",
        }
    )
    described = s.describe()
    for text in (described, repr(s)):
        assert API_KEY not in text
        assert REDIS_PASSWORD not in text
    assert "OPENAI_API_KEY=<set>" in described
    assert "REDIS_URL=redis://default:***@redis.internal:6379/0" in described
    assert "INSTRUCTIONS=<27 chars>" in described
    assert "MAX_CALLS=20" in described
    assert "OPENAI_REALTIME_URL=wss://api.openai.com/v1/realtime" in described


def test_describe_shows_unset_secret() -> None:
    s = WorkerSettings.from_env({"OPENAI_REALTIME_URL": "ws://sim:9000"})
    assert "OPENAI_API_KEY=<unset>" in s.describe()


# --- edge -----------------------------------------------------------------------------------


def test_edge_defaults() -> None:
    s = EdgeSettings.from_env(EDGE_ENV)
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.key_prefix == "sb"
    assert s.host == "0.0.0.0"
    assert s.port == 8080
    assert s.public_url == "https://edge.example.com"
    assert s.twilio_auth_token == AUTH_TOKEN
    assert s.validate_signature is True
    assert s.stream_token_secret is None
    assert s.stream_token_ttl_s == 60
    assert s.drain_timeout_s == 30.0
    assert s.edge_id
    assert s.twilio_webhook_shared_key is None and s.twilio_webhook_shared_key_previous is None
    assert s.failure_message.startswith("Sorry, something went wrong on our side")


def test_edge_public_url_loses_trailing_slash() -> None:
    s = EdgeSettings.from_env({**EDGE_ENV, "PUBLIC_URL": "https://edge.example.com/base/"})
    assert s.public_url == "https://edge.example.com/base"


@pytest.mark.parametrize("value", ["1", "true", "YES", "on"])
def test_bool_true_spellings(value: str) -> None:
    assert EdgeSettings.from_env(
        {**EDGE_ENV, "TWILIO_VALIDATE_SIGNATURE": value}
    ).validate_signature


@pytest.mark.parametrize("value", ["0", "false", "No", "off"])
def test_bool_false_spellings(value: str) -> None:
    s = EdgeSettings.from_env({**EDGE_ENV, "TWILIO_VALIDATE_SIGNATURE": value})
    assert s.validate_signature is False


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("PORT", "0", "expected an integer from 1 to 65535"),
        ("PORT", "http", "expected an integer from 1 to 65535"),
        ("PUBLIC_URL", "edge.example.com", "expected the edge's public base URL"),
        ("PUBLIC_URL", "wss://edge.example.com", "expected the edge's public base URL"),
        ("PUBLIC_URL", "https://edge.example.com/?x=1", "must not have a query string"),
        ("PUBLIC_URL", "https://edge.example.com/#top", "or fragment"),
        ("TWILIO_VALIDATE_SIGNATURE", "maybe", "expected true or false"),
        ("STREAM_TOKEN_TTL", "1", "expected an integer from 5 to 3600"),
        ("DRAIN_TIMEOUT", "-1", "expected a number from 0 to 3600"),
        ("EDGE_ID", "edge[1]", "without spaces or glob characters"),
    ],
)
def test_edge_invalid_value_names_variable_and_allowed_values(
    name: str, value: str, allowed: str
) -> None:
    message = _error(EdgeSettings, {**EDGE_ENV, name: value})
    line = next(line for line in message.splitlines() if line.strip().startswith(name))
    assert allowed in line
    assert repr(value) in line


def test_edge_needs_public_url_and_auth_token() -> None:
    message = _error(EdgeSettings, {})
    assert "PUBLIC_URL is not set" in message
    assert "TWILIO_AUTH_TOKEN is not set, nor TWILIO_WEBHOOK_SHARED_KEY" in message
    assert "STREAM_TOKEN_SECRET is not set" in message
    assert "TWILIO_VALIDATE_SIGNATURE=false" in message  # the way out for a local test


SHARED_KEY = "webhook-shared-key-secret-42"


def test_a_shared_key_alone_satisfies_the_signature_check_but_not_the_stream_tokens() -> None:
    env = {"PUBLIC_URL": "https://edge.example.com", "TWILIO_WEBHOOK_SHARED_KEY": SHARED_KEY}
    message = _error(EdgeSettings, env)
    (line,) = [line.strip() for line in message.splitlines() if "is not set" in line]
    # The stream token key is never derived from a shared key (it rotates on its own).
    assert line.startswith("STREAM_TOKEN_SECRET is not set and there is no TWILIO_AUTH_TOKEN")
    assert SHARED_KEY not in message
    s = EdgeSettings.from_env({**env, "STREAM_TOKEN_SECRET": TOKEN_SECRET})
    assert s.twilio_auth_token is None and s.twilio_webhook_shared_key == SHARED_KEY


def test_auth_token_and_shared_keys_together() -> None:
    s = EdgeSettings.from_env(
        {
            **EDGE_ENV,
            "TWILIO_WEBHOOK_SHARED_KEY": SHARED_KEY,
            "TWILIO_WEBHOOK_SHARED_KEY_PREVIOUS": "previous-shared-key",
        }
    )
    assert s.twilio_auth_token == AUTH_TOKEN
    assert s.twilio_webhook_shared_key_previous == "previous-shared-key"
    for text in (s.describe(), repr(s)):
        assert SHARED_KEY not in text and "previous-shared-key" not in text
    assert "TWILIO_WEBHOOK_SHARED_KEY=<set>" in s.describe()
    assert "TWILIO_WEBHOOK_SHARED_KEY_PREVIOUS=<set>" in s.describe()
    assert {SHARED_KEY, "previous-shared-key"} <= set(s.secret_values())


def test_a_previous_shared_key_alone_does_not_satisfy_the_signature_check() -> None:
    env = {"PUBLIC_URL": "https://e.example.com", "STREAM_TOKEN_SECRET": TOKEN_SECRET}
    message = _error(EdgeSettings, {**env, "TWILIO_WEBHOOK_SHARED_KEY_PREVIOUS": SHARED_KEY})
    assert "TWILIO_AUTH_TOKEN is not set, nor TWILIO_WEBHOOK_SHARED_KEY" in message


def test_failure_message_and_realtime_reconnects() -> None:
    edge = EdgeSettings.from_env({**EDGE_ENV, "FAILURE_MESSAGE": "Sorry. Goodbye."})
    assert edge.failure_message == "Sorry. Goodbye."
    assert (
        WorkerSettings.from_env({**WORKER_ENV, "REALTIME_RECONNECTS": "0"}).realtime_reconnects == 0
    )
    for bad in ("-1", "21", "three"):
        message = _error(WorkerSettings, {**WORKER_ENV, "REALTIME_RECONNECTS": bad})
        assert f"REALTIME_RECONNECTS={bad!r}: expected an integer from 0 to 20" in message
    table = all_variables()
    assert table["FAILURE_MESSAGE"][1] == {"edge"}
    assert table["REALTIME_RECONNECTS"][1] == {"worker"}


def test_edge_without_signature_check_still_needs_a_token_secret() -> None:
    env = {"PUBLIC_URL": "http://localhost:8080", "TWILIO_VALIDATE_SIGNATURE": "false"}
    message = _error(EdgeSettings, env)
    assert "STREAM_TOKEN_SECRET is not set" in message
    assert "TWILIO_AUTH_TOKEN" not in message.split("STREAM_TOKEN_SECRET is not set")[0]
    s = EdgeSettings.from_env({**env, "STREAM_TOKEN_SECRET": TOKEN_SECRET})
    assert s.twilio_auth_token is None
    assert s.stream_token_secret == TOKEN_SECRET


def test_edge_describe_and_repr_hide_secrets() -> None:
    s = EdgeSettings.from_env(
        {
            **EDGE_ENV,
            "STREAM_TOKEN_SECRET": TOKEN_SECRET,
            "REDIS_URL": f"redis://:{REDIS_PASSWORD}@redis:6379/0",
        }
    )
    described = s.describe()
    for text in (described, repr(s)):
        assert AUTH_TOKEN not in text
        assert TOKEN_SECRET not in text
        assert REDIS_PASSWORD not in text
    assert "TWILIO_AUTH_TOKEN=<set>" in described
    assert "STREAM_TOKEN_SECRET=<set>" in described
    assert "REDIS_URL=redis://:***@redis:6379/0" in described
    assert "PORT=8080" in described


def test_invalid_secret_is_never_echoed() -> None:
    # Parse errors on secrets show "(hidden)"; the cross-check messages never quote values.
    message = _error(EdgeSettings, {"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "PUBLIC_URL": "ftp://x"})
    assert AUTH_TOKEN not in message


# --- helpers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("redis://:pw@localhost:6379/0", "redis://:***@localhost:6379/0"),
        ("redis://user:pw@localhost/0", "redis://user:***@localhost/0"),
        ("rediss://u:p%40ss@h:1/0?ssl_cert_reqs=none", "rediss://u:***@h:1/0?ssl_cert_reqs=none"),
        ("redis://user@localhost", "redis://user@localhost"),
    ],
)
def test_redact_url(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


def test_all_variables_lists_each_once_with_its_services() -> None:
    table = all_variables()
    assert table["REDIS_URL"][1] == {"edge", "worker"}
    assert table["OPENAI_API_KEY"][1] == {"worker"}
    assert table["TWILIO_AUTH_TOKEN"][1] == {"edge"}
    secrets = {name for name, (var, _) in table.items() if var.secret}
    assert secrets == {
        "REDIS_URL",
        "OPENAI_API_KEY",
        "TWILIO_AUTH_TOKEN",
        "TWILIO_AUTH_TOKEN_PREVIOUS",
        "TWILIO_WEBHOOK_SHARED_KEY",
        "TWILIO_WEBHOOK_SHARED_KEY_PREVIOUS",
        "STREAM_TOKEN_SECRET",
        "ADMIN_TOKEN",
        "API_TOKEN",
        "TWILIO_API_KEY_SECRET",
    }
    assert all(var.help for var, _ in table.values())


def test_secret_values_hold_every_secret_and_only_the_redis_password() -> None:
    settings = EdgeSettings.from_env(
        {
            "PUBLIC_URL": "https://edge.example.com",
            "TWILIO_AUTH_TOKEN": "current-token",
            "TWILIO_AUTH_TOKEN_PREVIOUS": "previous-token",
            "STREAM_TOKEN_SECRET": "stream-secret",
            "REDIS_URL": "redis://user:redis-password@redis.internal:6379/0",
        }
    )
    assert sorted(settings.secret_values()) == sorted(
        ["current-token", "previous-token", "stream-secret", "redis-password"]
    )


def test_conversation_settings_defaults_and_validation() -> None:
    base = {"OPENAI_REALTIME_URL": "ws://sim:1/v1/realtime"}
    settings = WorkerSettings.from_env(base)
    assert settings.barge_in is True
    assert settings.barge_in_min_heard_ms == 300
    assert settings.dtmf is True
    assert settings.greeting == ""
    assert settings.max_call_duration_s == 0
    assert settings.max_tokens_per_call == 0
    assert settings.call_record_retention_s == 86400
    changed = WorkerSettings.from_env(
        base
        | {"BARGE_IN": "off", "DTMF": "false", "GREETING": "Say hello.", "MAX_CALL_DURATION": "20"}
    )
    assert (changed.barge_in, changed.dtmf, changed.greeting) == (False, False, "Say hello.")
    assert changed.max_call_duration_s == 20
    assert "GREETING=<10 chars>" in changed.describe()
    with pytest.raises(ConfigError) as info:
        WorkerSettings.from_env(
            base | {"BARGE_IN_MIN_HEARD_MS": "-1", "CALL_RECORD_RETENTION": "5", "DTMF": "maybe"}
        )
    for name in ("BARGE_IN_MIN_HEARD_MS", "CALL_RECORD_RETENTION", "DTMF"):
        assert name in str(info.value)


def test_admin_token_is_optional_secret_and_not_weak() -> None:
    env = {"PUBLIC_URL": "https://e.example.com", "TWILIO_AUTH_TOKEN": "t" * 32}
    assert EdgeSettings.from_env(env).admin_token is None
    assert EdgeSettings.from_env(env | {"ADMIN_TOKEN": ""}).admin_token is None
    strong = EdgeSettings.from_env(env | {"ADMIN_TOKEN": "a" * 24})
    assert strong.admin_token == "a" * 24
    assert "a" * 24 not in repr(strong) and "ADMIN_TOKEN=<set>" in strong.describe()
    with pytest.raises(ConfigError, match="ADMIN_TOKEN=\\(hidden\\): expected at least 16"):
        EdgeSettings.from_env(env | {"ADMIN_TOKEN": "short"})


def test_a_variable_both_services_read_has_one_meaning() -> None:
    edge = {var.name: var for _, var in EdgeSettings.variables()}
    worker = {var.name: var for _, var in WorkerSettings.variables()}
    shared = edge.keys() & worker.keys()
    assert {"REDIS_URL", "KEY_PREFIX", "LOG_LEVEL", "REDIS_BATCH_MS", "DRAIN_TIMEOUT"} <= shared
    for name in sorted(shared):
        e, w = edge[name], worker[name]
        assert (e.default, e.help, e.secret) == (w.default, w.help, w.secret), name
        for raw in ("1", "30", "abc", "redis://h:1/0", "INFO", ""):
            assert _parsed(e.parse, raw) == _parsed(w.parse, raw), (name, raw)


def _parsed(parse: object, raw: str) -> object:
    try:
        return parse(raw)  # type: ignore[operator]
    except ValueError as exc:
        return type(exc)


def test_drain_timeout_says_what_each_service_does() -> None:
    (var,) = (v for _, v in WorkerSettings.variables() if v.name == "DRAIN_TIMEOUT")
    assert "edge" in var.help and "worker" in var.help and "DRAIN_MODE=finish" in var.help
