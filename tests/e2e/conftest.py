"""End-to-end fixtures: real Redis, real edge/worker/simulator processes, real sockets.

Redis: the server on 127.0.0.1:6379 when one answers (each stack writes under its own random
key prefix and deletes only those keys afterwards), else a private ``redis-server``.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from services.call_sim import CallConfig
from services.devstack import (
    PUBLIC_URL,
    RedisHandle,
    Stack,
    StackConfig,
    provide_redis,
    start_redis_server,
)

pytestmark = pytest.mark.e2e

StackFactory = Callable[..., Stack]


@pytest.fixture(scope="session")
def redis_handle() -> Iterator[RedisHandle]:
    handle = provide_redis("redis://127.0.0.1:6379/0")
    if handle.kind == "fakeredis":  # the end-to-end tests want the real thing
        handle.close()
        handle = start_redis_server()
    yield handle
    handle.close()


def _delete_prefix(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def make_stack(redis_handle: RedisHandle, tmp_path: Path) -> Iterator[StackFactory]:
    """Start stacks with ``make_stack(workers=2, sim_mode="echo", ...)``; all are stopped, their
    processes must exit 0, and their Redis keys are deleted."""
    stacks: list[Stack] = []

    def factory(**overrides: Any) -> Stack:
        config = StackConfig(
            redis_url=redis_handle.url, log_dir=tmp_path / f"stack{len(stacks)}", **overrides
        )
        stack = Stack(config)
        stacks.append(stack)
        stack.start()
        return stack

    yield factory
    for stack in stacks:
        codes = stack.stop()
        _delete_prefix(redis_handle.url, stack.config.key_prefix)
        bad = {name: code for name, code in codes.items() if code != 0}
        assert not bad, f"processes exited with errors: {bad}\n" + "\n".join(
            f"--- {p.name}\n{p.log()[-2000:]}" for p in stack.processes()
        )


def scrape(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=2) as response:
        text: str = response.read().decode()
        return text


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format; 0 when the series is absent."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if match is None or match.group(1) != name:
            continue
        found = ",".join(sorted((match.group(2) or "").split(","))) if match.group(2) else ""
        if found == wanted:
            return float(match.group(3))
    return 0.0


def call_config(stack: Stack, audio: bytes, hold_s: float = 1.0, **extra: Any) -> CallConfig:
    """A simulated call to ``stack``'s edges, signed with the stack's auth token."""
    fields: dict[str, Any] = {
        "edge_urls": stack.edge_urls,
        "public_url": PUBLIC_URL,
        "auth_token": stack.config.auth_token,
        "caller_audio": audio,
        "hold_s": hold_s,
    }
    return CallConfig(**(fields | extra))
