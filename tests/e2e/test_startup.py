"""Services refuse to start on bad configuration, naming the variable to set."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from services.devstack import RedisHandle, wait_for
from tests.support.ports import allocator

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


@pytest.fixture
def cluster_node(tmp_path: Path) -> Iterator[str]:
    """The URL of a private ``redis-server`` started with ``cluster-enabled yes`` (a node with
    no slots yet: what a process pointed at a cluster by mistake would meet first)."""
    binary = shutil.which("redis-server")
    assert binary is not None, "redis-server is not installed (.ci/run installs it)"
    port = allocator()
    password = "cluster-node-secret-4711"
    node = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        + ["--cluster-enabled", "yes", "--dir", str(tmp_path), "--requirepass", password],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    try:
        wait_for(lambda: _cluster_enabled(url), 10, "the cluster node")
        yield url
    finally:
        node.terminate()
        node.wait(timeout=10)


def _cluster_enabled(url: str) -> bool:
    try:
        with redis.Redis.from_url(url) as client:
            return bool(client.info("cluster").get("cluster_enabled") == 1)
    except redis.exceptions.ConnectionError:
        return False


#: Each service, with the settings it needs besides Redis.
EACH_SERVICE = pytest.mark.parametrize(
    ("module", "env"),
    [
        ("services.realtime_worker", {"OPENAI_API_KEY": "sk-test-key"}),
        ("services.edge", {"PUBLIC_URL": "https://voice.example.com", "TWILIO_AUTH_TOKEN": "t"}),
    ],
)


@EACH_SERVICE
def test_a_redis_cluster_node_without_redis_cluster_is_refused_at_start_naming_it(
    cluster_node: str, module: str, env: dict[str, str]
) -> None:
    result = _run(module, {"REDIS_URL": cluster_node, **env})
    assert result.returncode == 2
    assert "is a Redis Cluster node (cluster_enabled:1)" in result.stderr
    assert "Set REDIS_CLUSTER=true" in result.stderr
    assert "cluster-node-secret-4711" not in result.stderr + result.stdout


@EACH_SERVICE
def test_redis_cluster_set_against_a_single_redis_is_refused_at_start(
    redis_handle: RedisHandle, module: str, env: dict[str, str]
) -> None:
    result = _run(module, {"REDIS_URL": redis_handle.url, "REDIS_CLUSTER": "true", **env})
    assert result.returncode == 2
    assert "REDIS_CLUSTER=true but REDIS_URL" in result.stderr
    assert "is not a Redis Cluster node" in result.stderr
