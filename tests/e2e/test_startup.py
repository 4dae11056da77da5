"""Services refuse to start on bad configuration, naming the variable to set."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def _run(module: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return subprocess.run(
        [sys.executable, "-m", module],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_worker_without_openai_key_refuses_to_start() -> None:
    result = _run("services.realtime_worker", {"REDIS_URL": "redis://127.0.0.1:6379/0"})
    assert result.returncode == 2
    assert "OPENAI_API_KEY" in result.stderr


def test_worker_needs_no_key_for_a_local_simulator() -> None:
    env = {"OPENAI_REALTIME_URL": "ws://127.0.0.1:9/v1/realtime", "MAX_CALLS": "zero"}
    result = _run("services.realtime_worker", env)
    # It gets past the key check and stops on the next problem: proof the key was not asked for.
    assert result.returncode == 2
    assert "OPENAI_API_KEY" not in result.stderr
    assert "MAX_CALLS" in result.stderr


def test_edge_without_public_url_refuses_to_start_and_keeps_secrets_out() -> None:
    secret = "tw-secret-auth-token-4711"
    result = _run("services.edge", {"TWILIO_AUTH_TOKEN": secret, "PORT": "70000"})
    assert result.returncode == 2
    assert "PUBLIC_URL" in result.stderr
    assert "PORT" in result.stderr
    assert secret not in result.stderr + result.stdout
