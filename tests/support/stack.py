"""Whole stacks for end-to-end tests: their Redis, starting and stopping them, talking to them
(simulated calls, metrics, the admin API) and reading what their processes logged.

Redis: a private ``redis-server`` on a free port, one per pytest process (an xdist worker runs
its tests one at a time, so a test measuring Redis sees only its own stack), started on first
use. ``SWITCHBOARD_TEST_REDIS_URL`` names a Redis to use instead. Either way each stack writes
under its own random key prefix and deletes only its own keys afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, cast

import redis

from services.call_sim import CallConfig
from services.devstack import (
    PUBLIC_URL,
    ManagedProcess,
    RedisHandle,
    Stack,
    StackConfig,
    provide_redis,
    start_redis_server,
)
from shared.keys import Keys
from tests.support.sim_thread import simulator_thread
from tests.support.waiting import eventually

__all__ = [
    "ADMIN_TOKEN",
    "REDIS_URL_VARIABLE",
    "StackFactory",
    "active_calls",
    "call_config",
    "call_holder",
    "call_record",
    "call_turns",
    "e2e_redis",
    "edge_ready",
    "metric_value",
    "read_api",
    "running_stacks",
    "scrape",
    "scrape_async",
    "wait_for_audio_out",
    "worker_log",
    "worker_metrics",
]

#: The environment variable naming a Redis for the end-to-end tests (instead of a private one).
REDIS_URL_VARIABLE = "SWITCHBOARD_TEST_REDIS_URL"
#: The admin API's token in stacks that serve it (``edge_env={"ADMIN_TOKEN": ADMIN_TOKEN}``).
ADMIN_TOKEN = "e2e-admin-token-0123456789"

StackFactory = Callable[..., Stack]


@contextmanager
def e2e_redis() -> Iterator[RedisHandle]:
    """The Redis the end-to-end tests share: ``$SWITCHBOARD_TEST_REDIS_URL`` (which must
    answer), else a private ``redis-server``; a private one is stopped afterwards."""
    url = os.environ.get(REDIS_URL_VARIABLE)
    if url:
        handle = provide_redis(url)
        if handle.kind != "existing":
            handle.close()
            raise RuntimeError(f"{REDIS_URL_VARIABLE}={url} does not answer")
    else:
        handle = start_redis_server()
    try:
        yield handle
    finally:
        handle.close()


#: What makes an edge or a worker measure its coverage (``make test``; coverage's subprocess
#: patch sets it in the test process). Stacks pass it on: their processes start with a minimal
#: environment otherwise.
COVERAGE_VARIABLES = ("COVERAGE_PROCESS_CONFIG", "COVERAGE_PROCESS_START")


def _with_coverage(overrides: dict[str, Any]) -> dict[str, Any]:
    coverage = {name: os.environ[name] for name in COVERAGE_VARIABLES if name in os.environ}
    if not coverage:
        return overrides
    return overrides | {
        "edge_env": coverage | overrides.get("edge_env", {}),
        "worker_env": coverage | overrides.get("worker_env", {}),
    }


def redis_client(config: StackConfig) -> redis.Redis:
    """A client of the stack's Redis: redis-py's cluster client on a cluster (it takes the
    same commands, one slot each)."""
    if config.redis_cluster:
        return cast(redis.Redis, redis.RedisCluster.from_url(config.redis_url))
    return redis.Redis.from_url(config.redis_url)


def _delete_prefix(config: StackConfig) -> None:
    client = redis_client(config)
    try:
        # One by one: on a cluster the keys live in many slots (SCAN visits every primary).
        for key in list(client.scan_iter(match=f"{config.key_prefix}:*", count=1000)):
            client.delete(key)
    finally:
        client.close()


@contextmanager
def running_stacks(redis_url: str, log_dir: Path) -> Iterator[StackFactory]:
    """Start stacks with ``factory(workers=2, sim_mode="echo", ...)``; on the way out all are
    stopped, their processes must have exited 0, and their Redis keys are deleted. Each
    stack's realtime simulator runs in a thread of this process (``tests.support.sim_thread``)
    unless ``sim_url`` names another."""
    stacks: list[Stack] = []
    simulators = ExitStack()

    def factory(**overrides: Any) -> Stack:
        config = StackConfig(
            redis_url=redis_url,
            log_dir=log_dir / f"stack{len(stacks)}",
            **_with_coverage(overrides),
        )
        if config.sim_url is None:
            config.log_dir.mkdir(parents=True, exist_ok=True)
            config.sim_url = simulators.enter_context(simulator_thread(config.sim_arguments(0)))
        stack = Stack(config)
        stacks.append(stack)
        stack.start()
        return stack

    try:
        yield factory
    finally:
        for stack in stacks:  # all at once: each then exits while the others do
            for process in stack.processes():
                process.signal(signal.SIGTERM)
        codes = {}
        with simulators:  # closed after the workers: their sessions end as they stop
            for stack in stacks:
                codes[stack.config.key_prefix] = stack.stop()
                _delete_prefix(stack.config)
    for stack in stacks:
        bad = {name: code for name, code in codes[stack.config.key_prefix].items() if code != 0}
        # The verdict last, after the logs: a CI log's tail shows it.
        logs = "\n".join(f"--- {p.name}\n{p.log()[-2000:]}" for p in stack.processes())
        assert not bad, f"{logs}\n--- processes exited with errors: {bad}"


# --- calls ------------------------------------------------------------------------------------


#: How long a simulated caller stays on the line, at most, after its audio and hold, for audio
#: still coming (it leaves once the edge has been quiet for half a second): on a busy machine
#: an echo or a reply can lag seconds behind, and hanging up on it would fail the test.
LINGER_S = 8.0
#: In echo mode, while less has come back than the caller sent, the quiet that ends its wait:
#: a busy machine was seen to stall an echo for over half a second (the default quiet_s).
ECHO_QUIET_S = 2.0


def call_config(stack: Stack, audio: bytes, hold_s: float = 1.0, **extra: Any) -> CallConfig:
    """A simulated call to ``stack``'s edges, signed with the stack's auth token."""
    fields: dict[str, Any] = {
        "edge_urls": stack.edge_urls,
        "public_url": PUBLIC_URL,
        "auth_token": stack.config.auth_token,
        "caller_audio": audio,
        "hold_s": hold_s,
        "linger_s": LINGER_S,
        "echo_quiet_s": ECHO_QUIET_S if stack.config.sim_mode == "echo" else None,
    }
    return CallConfig(**(fields | extra))


def call_record(stack: Stack, call_sid: str) -> dict[str, str]:
    """The call's record (hash) in the stack's Redis, as the processes left it."""
    client = redis_client(stack.config)
    keys = Keys(stack.config.key_prefix, clustered=stack.config.redis_cluster)
    try:
        record: dict[bytes, bytes] = client.hgetall(keys.call(call_sid))  # type: ignore[assignment]
        return {name.decode(): value.decode() for name, value in record.items()}
    finally:
        client.close()


def call_turns(stack: Stack, call_sid: str) -> list[bytes]:
    """The conversation turns stored for the call (JSON items, oldest first)."""
    client = redis_client(stack.config)
    keys = Keys(stack.config.key_prefix, clustered=stack.config.redis_cluster)
    try:
        turns: list[bytes] = client.lrange(keys.turns(call_sid), 0, -1)  # type: ignore[assignment]
        return turns
    finally:
        client.close()


def read_api(stack: Stack, path: str) -> dict[str, Any]:
    """A GET on the first edge's read API, on its admin port (the stack runs with
    ``ADMIN_TOKEN``)."""
    request = urllib.request.Request(
        stack.edge_admin_urls[0] + path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=2) as response:
        body: dict[str, Any] = json.loads(response.read())
        return body


# --- metrics, readiness, logs -----------------------------------------------------------------


def scrape(url: str) -> str:
    """The Prometheus exposition at ``url``/metrics."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=2) as response:
        text: str = response.read().decode()
        return text


async def scrape_async(url: str) -> str:
    """``scrape`` in a thread: the event loop (a call simulator streaming in real time, say)
    goes on meanwhile."""
    return await asyncio.to_thread(scrape, url)


def worker_metrics(stack: Stack, index: int = 0) -> str:
    return scrape(f"http://127.0.0.1:{stack.workers[index].port}")


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


def edge_ready(admin_url: str) -> bool:
    """Whether the edge whose admin port is at ``admin_url`` answers /readyz with 200 (False
    when it does not answer at all)."""
    try:
        with urllib.request.urlopen(f"{admin_url}/readyz", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def worker_log(stack: Stack) -> str:
    """Everything every worker of ``stack`` (still listed in it) logged."""
    return "".join(p.log() for p in stack.processes() if p.name.startswith("worker"))


# --- waiting on what a stack's processes count --------------------------------------------------


async def active_calls(worker: ManagedProcess) -> float:
    """The calls ``worker`` holds now (its ``switchboard_worker_active_calls``)."""
    text = await scrape_async(f"http://127.0.0.1:{worker.port}")
    return metric_value(text, "switchboard_worker_active_calls")


async def call_holder(stack: Stack, within_s: float = 10.0) -> ManagedProcess:
    """The worker that holds the stack's one live call, once one has claimed it."""

    async def holders() -> list[ManagedProcess]:
        return [worker for worker in stack.workers if await active_calls(worker) >= 1]

    (holder,) = await eventually(holders, within_s, "a worker holding the call")
    return holder


async def wait_for_audio_out(
    stack: Stack, audio_bytes: int, edge: int = 0, within_s: float = 20.0
) -> None:
    """Until edge ``edge`` has sent callers ``audio_bytes`` of audio in all (8000 a second):
    the calls are under way, however slow the machine is to get them going."""
    url = stack.edge_admin_urls[edge]

    async def sent() -> bool:
        text = await scrape_async(url)
        return metric_value(text, "switchboard_edge_audio_out_bytes_total") >= audio_bytes

    await eventually(sent, within_s, f"{audio_bytes} bytes of audio sent by edge {edge}")
