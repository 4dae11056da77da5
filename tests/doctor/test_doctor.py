"""``python -m services.doctor`` against the realtime simulator (in process) and a real Redis."""

from __future__ import annotations

import http.server
import json
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest

from services.devstack import RedisHandle, free_port, start_redis_server
from services.doctor import probes
from services.doctor.__main__ import build_parser, render, run_checks
from services.doctor.checks import Check, signature_checks
from services.edge.settings import EdgeSettings
from services.realtime_sim import BehaviourConfig, Fault, SimulatorConfig, run_simulator
from services.realtime_worker import openai_protocol as rt
from services.realtime_worker.call_profile import CallParty, call_profile
from services.realtime_worker.session_setup import session_options
from services.realtime_worker.settings import WorkerSettings
from shared.agents import DEFAULT_AGENT, Agent

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "doctor-test-auth-token"
LOCAL_REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """Redis at 127.0.0.1:6379 if one answers, else a private redis-server, else skip."""
    import redis

    try:
        redis.Redis.from_url(LOCAL_REDIS, socket_connect_timeout=0.5).ping()
        yield LOCAL_REDIS
        return
    except redis.exceptions.RedisError:
        pass
    try:
        handle: RedisHandle = start_redis_server()
    except FileNotFoundError as exc:
        pytest.skip(f"no Redis at 127.0.0.1:6379 and {exc}")
    try:
        yield handle.url
    finally:
        handle.close()


async def _sim(
    fault: Fault = Fault.NONE, api_key: str | None = None, serves_pcm16: bool = False
) -> AsyncIterator[str]:
    behaviour = BehaviourConfig(speed=50, fault=fault, serves_pcm16=serves_pcm16)
    config = SimulatorConfig(behaviour=behaviour, api_key=api_key)
    async with run_simulator(config) as sim:
        yield sim.url


@pytest.fixture
async def sim_url() -> AsyncIterator[str]:
    async for url in _sim():
        yield url


def _env(redis_url: str, sim_url: str, **extra: str) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "PUBLIC_URL": "https://edge.example.com",
        "TWILIO_AUTH_TOKEN": TOKEN,
        "OPENAI_REALTIME_URL": sim_url,
    } | extra


async def _checks(env: dict[str, str], *argv: str) -> list[Check]:
    return await run_checks(build_parser().parse_args(["--timeout", "10", *argv]), env)


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


async def _doctor(env: dict[str, str], *argv: str) -> tuple[int, str]:
    result = await anyio.run_process(
        [sys.executable, "-m", "services.doctor", "--timeout", "10", *argv],
        env={"PATH": "/usr/bin:/bin", **env},
        cwd=ROOT,
        check=False,
    )
    return result.returncode, result.stdout.decode()


@pytest.mark.anyio
async def test_healthy_stack_passes_every_check(redis_url: str, sim_url: str) -> None:
    code, out = await _doctor(_env(redis_url, sim_url), "--tone")
    assert code == 0, out
    assert "✗" not in out and "all 8 checks passed" in out
    for line in ("audio/pcmu, output audio/pcmu", "reply audio is μ-law", "Redis at"):
        assert line in out


@pytest.mark.anyio
async def test_json_output(redis_url: str, sim_url: str) -> None:
    code, out = await _doctor(_env(redis_url, sim_url), "--json", "--role", "worker")
    report = json.loads(out)
    assert code == 0 and report["ok"] is True
    assert [c["name"] for c in report["checks"]] == [
        "config.worker",
        "redis",
        "realtime.connect",
        "realtime.formats",
    ]
    for check in report["checks"]:
        assert set(check) == {"name", "status", "summary", "fix"}
        assert check["status"] == "pass"


@pytest.mark.anyio
@pytest.mark.parametrize("fault", [Fault.PCM16, Fault.IGNORE_SESSION_UPDATE])
async def test_a_server_that_refuses_ulaw_fails_naming_the_format(
    redis_url: str, fault: Fault
) -> None:
    async for url in _sim(fault):
        checks = _by_name(await _checks(_env(redis_url, url), "--tone", "--role", "worker"))
    formats, tone = checks["realtime.formats"], checks["realtime.tone"]
    assert formats.status == "fail"
    assert "input audio/pcm, output audio/pcm" in formats.summary
    assert formats.fix and "audio/pcmu" in formats.fix and "OPENAI_REALTIME_URL" in formats.fix
    assert tone.status == "fail" and "PCM16" in tone.summary
    assert tone.fix and "audio/pcmu" in tone.fix
    assert "✗" in render(list(checks.values()))


@pytest.mark.anyio
async def test_a_pcm16_only_backend_passes_only_in_transcoding_mode(redis_url: str) -> None:
    async for url in _sim(serves_pcm16=True):
        as_is = _by_name(await _checks(_env(redis_url, url), "--role", "worker"))
        transcoding = _env(redis_url, url, REALTIME_AUDIO_FORMAT="pcm16")
        code, out = await _doctor(transcoding, "--tone", "--role", "worker")
    formats = as_is["realtime.formats"]
    assert formats.status == "fail"
    assert formats.fix and "set REALTIME_AUDIO_FORMAT=pcm16" in formats.fix
    assert code == 0, out
    assert "✓ session.updated confirms input audio/pcm, output audio/pcm (the worker" in out
    assert "✓ reply audio is μ-law" in out


@pytest.mark.anyio
async def test_double_base64_reply_fails_the_tone_check(redis_url: str) -> None:
    async for url in _sim(Fault.DOUBLE_BASE64):
        code, out = await _doctor(_env(redis_url, url), "--tone", "--role", "worker")
    assert code == 1
    assert "✓ session.updated confirms input audio/pcmu" in out
    assert "✗ reply audio: outbound audio bytes are base64 text" in out


@pytest.mark.anyio
async def test_wrong_api_key_names_the_variable(redis_url: str) -> None:
    async for url in _sim(api_key="the-right-key"):
        env = _env(redis_url, url, OPENAI_API_KEY="a-wrong-key")
        code, out = await _doctor(env, "--role", "worker")
    assert code == 1
    assert "✗ cannot open a Realtime session" in out and "OPENAI_API_KEY" in out


@pytest.mark.anyio
async def test_bad_config_names_each_variable(redis_url: str, sim_url: str) -> None:
    env = _env(redis_url, sim_url, PORT="eighty", LEASE_TTL_MS="1000")
    del env["PUBLIC_URL"]
    checks = _by_name(await _checks(env))
    assert checks["config.edge.PORT"].status == "fail"
    assert "integer" in (checks["config.edge.PORT"].fix or "")
    assert checks["config.edge.PUBLIC_URL"].status == "fail"
    assert "PUBLIC_URL=https://" in (checks["config.edge.PUBLIC_URL"].fix or "")
    assert checks["config.worker.HEARTBEAT_INTERVAL_MS"].status == "fail"
    assert checks["signature"].status == "skip"
    assert checks["realtime"].status == "skip"  # worker config invalid: no session opened


@pytest.mark.anyio
async def test_unreachable_redis_and_edge_fail_naming_the_fix(sim_url: str) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    edge = f"http://127.0.0.1:{free_port()}"
    # --edge-url: the flag's old name, still accepted.
    checks = _by_name(await _checks(_env(dead, sim_url), "--edge-url", edge, "--no-realtime"))
    assert checks["redis"].status == "fail" and "REDIS_URL" in (checks["redis"].fix or "")
    assert checks["edge.readyz"].status == "fail"
    assert "--admin-url" in (checks["edge.readyz"].fix or "")


@pytest.mark.anyio
async def test_an_edge_public_port_given_for_readyz_is_named_as_such() -> None:
    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # what the edge's public port answers /readyz
            self.send_response(404)
            self.end_headers()
            self.wfile.write(b"Not Found")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        check = await probes.probe_edge(f"http://127.0.0.1:{server.server_port}", 5)
    finally:
        server.shutdown()
        server.server_close()
    assert check.status == "fail" and "404" in check.summary
    assert "ADMIN_PORT" in (check.fix or "") and "--admin-url" in (check.fix or "")


def test_signature_settings_against_public_url() -> None:
    base = {"TWILIO_AUTH_TOKEN": TOKEN}

    def statuses(**env: str) -> dict[str, str]:
        settings = EdgeSettings.from_env(base | env)
        return {c.name: c.status for c in signature_checks(settings)}

    assert statuses(PUBLIC_URL="https://e.example.com") == {
        "signature.public_url": "pass",
        "signature.validate": "pass",
    }
    assert statuses(PUBLIC_URL="http://e.example.com")["signature.public_url"] == "fail"
    assert statuses(PUBLIC_URL="https://e.example.com/sb")["signature.public_url"] == "warn"
    off = statuses(PUBLIC_URL="https://e.example.com", TWILIO_VALIDATE_SIGNATURE="false")
    assert off["signature.validate"] == "fail"


def test_signature_checks_name_the_signing_modes() -> None:
    def check(**env: str) -> Check:
        settings = EdgeSettings.from_env({"PUBLIC_URL": "https://e.example.com"} | env)
        return {c.name: c for c in signature_checks(settings)}["signature.validate"]

    token = check(TWILIO_AUTH_TOKEN=TOKEN)
    assert token.status == "pass"
    assert "auth token, HMAC-SHA1 (TWILIO_AUTH_TOKEN)" in token.summary
    assert "signed with a shared key are refused" in token.summary

    rotating = check(TWILIO_AUTH_TOKEN=TOKEN, TWILIO_AUTH_TOKEN_PREVIOUS="old")
    assert "TWILIO_AUTH_TOKEN and TWILIO_AUTH_TOKEN_PREVIOUS (a rotation)" in rotating.summary

    both = check(
        TWILIO_AUTH_TOKEN=TOKEN,
        TWILIO_WEBHOOK_SHARED_KEY="shared-secret",
        TWILIO_WEBHOOK_SHARED_KEY_PREVIOUS="old-shared-secret",
    )
    assert both.status == "pass"
    assert "auth token" in both.summary
    assert (
        "shared key, as X-Twilio-Webhooks-Signature-Settings names it (TWILIO_WEBHOOK_SHARED_KEY "
        "and TWILIO_WEBHOOK_SHARED_KEY_PREVIOUS (a rotation))" in both.summary
    )
    assert "shared-secret" not in both.summary and TOKEN not in both.summary

    # A shared key only: fine where a Webhook Rule covers every URL, so a warning with the fix.
    shared_only = check(TWILIO_WEBHOOK_SHARED_KEY="shared-secret", STREAM_TOKEN_SECRET="s" * 32)
    assert shared_only.status == "warn"
    assert "auth token are refused" in shared_only.summary
    assert "TWILIO_AUTH_TOKEN" in (shared_only.fix or "")

    off = check(TWILIO_VALIDATE_SIGNATURE="false", STREAM_TOKEN_SECRET="s" * 32)
    assert off.status == "fail" and "TWILIO_VALIDATE_SIGNATURE=false" in off.summary


def test_help() -> None:
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", "services.doctor", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0
    for flag in ("--role", "--admin-url", "--edge-url", "--tone", "--json"):
        assert flag in result.stdout


@pytest.mark.anyio
async def test_the_doctor_sends_exactly_the_session_a_worker_would(tmp_path: Path) -> None:
    # A doctor that configured its own session could pass where the worker's session fails:
    # with TOOLS_FILE and BARGE_IN=false, both must send the same tools and turn detection.
    tools = [
        {
            "name": "lookup_order",
            "description": "Find an order.",
            "parameters": {"type": "object", "properties": {"order": {"type": "string"}}},
            "url": "http://tools.internal/lookup",
        }
    ]
    (tmp_path / "tools.json").write_text(json.dumps(tools))
    settings = WorkerSettings.from_env(
        {
            "OPENAI_REALTIME_URL": "ws://127.0.0.1:1/v1/realtime",
            "TOOLS_FILE": str(tmp_path / "tools.json"),
            "BARGE_IN": "false",
        }
    )
    sent: list[dict[str, object]] = []

    class Socket:
        async def send(self, text: str) -> None:
            sent.append(json.loads(text))

        async def recv(self) -> str:
            return json.dumps(
                {"type": "error", "error": {"code": "stop_here", "message": "enough"}}
            )

    await probes._converse(Socket(), settings, False, probes._Session())  # type: ignore[arg-type]
    # What a worker sends for a call to the default agent (no AGENTS_FILE).
    profile = call_profile(settings, Agent(DEFAULT_AGENT), CallParty("CA1"), tools=settings.tools)
    worker = json.loads(rt.session_update("x", session_options(settings, profile)))
    assert sent[0]["session"] == worker["session"]
    session = worker["session"]
    assert [tool["name"] for tool in session["tools"]] == ["end_call", "lookup_order"]
    assert session["audio"]["input"]["turn_detection"]["interrupt_response"] is False
