"""Run a whole Switchboard stack on one machine: Redis, the realtime simulator, edges and
workers as real processes, each logging to its own file.

Used by ``python -m services.demo``, the end-to-end tests and the benchmark. Everything listens
on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from shared.config import redact_url

__all__ = [
    "DEMO_AUTH_TOKEN",
    "PUBLIC_URL",
    "ManagedProcess",
    "RedisHandle",
    "Stack",
    "StackConfig",
    "free_port",
    "provide_redis",
    "wait_for",
]

DEMO_AUTH_TOKEN = "switchboard-local-demo-auth-token"  # signs simulated Twilio requests only
PUBLIC_URL = "https://edge.switchboard.example"  # what the simulated Twilio believes it calls
DEMO_ACCOUNT_SID = "AC" + "5eed" * 8  # the stand-in Twilio account of the demo and the tests
DEMO_API_TOKEN = "switchboard-local-demo-api-token"  # the edges' API_TOKEN (POST /calls)
LOCALHOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(check: Any, timeout_s: float, what: str, interval_s: float = 0.05) -> None:
    """Poll ``check()`` until it is truthy; raise TimeoutError naming ``what``.

    Connection errors (OSError) mean "not yet"; any other exception from ``check`` is raised.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if check():
                return
        time.sleep(interval_s)
    raise TimeoutError(f"{what} not ready within {timeout_s:.0f}s")


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as response:
        return bool(response.status == 200)


def _port_open(port: int) -> bool:
    with socket.create_connection((LOCALHOST, port), timeout=0.5):
        return True


# --- Redis -------------------------------------------------------------------------------


@dataclass
class RedisHandle:
    """A Redis to use: one that was already running, or one started here."""

    url: str
    kind: str  # "existing", "redis-server" or "fakeredis"
    _process: subprocess.Popen[bytes] | None = None
    _fake: Any = None

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].split("/")[0])

    def close(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
        if self._fake is not None:
            self._fake.shutdown()
            self._fake.server_close()


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.exceptions.RedisError:
        return False


def start_redis_server(port: int | None = None, password: str | None = None) -> RedisHandle:
    """A private ``redis-server`` on loopback that keeps nothing on disk."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError(
            "redis-server is not installed (Debian: apt-get install redis-server)"
        )
    port = port or free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", LOCALHOST, "--save", "", "--appendonly", "no"]
        + (["--requirepass", password] if password else []),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    auth = f":{password}@" if password else ""
    url = f"redis://{auth}{LOCALHOST}:{port}/0"
    wait_for(lambda: _answers(url), 10, "redis-server")
    return RedisHandle(url, "redis-server", _process=process)


def provide_redis(url: str) -> RedisHandle:
    """The Redis at ``url`` if it answers; else a ``redis-server`` started here; else an
    embedded fakeredis server (a fallback for machines without Redis)."""
    if _answers(url):
        return RedisHandle(url, "existing")
    with contextlib.suppress(FileNotFoundError):
        return start_redis_server()
    try:
        from fakeredis import TcpFakeServer
    except ImportError:
        raise RuntimeError(
            f"no Redis answers at {redact_url(url)}, redis-server is not installed, and the "
            "embedded fallback needs fakeredis (pip install 'switchboard[dev]'): start Redis "
            "or set REDIS_URL"
        ) from None

    port = free_port()
    server = TcpFakeServer((LOCALHOST, port), server_type="redis")
    threading.Thread(target=server.serve_forever, daemon=True, name="fakeredis").start()
    handle = RedisHandle(f"redis://{LOCALHOST}:{port}/0", "fakeredis", _fake=server)
    wait_for(lambda: _answers(handle.url), 10, "embedded fakeredis")
    return handle


# --- processes ---------------------------------------------------------------------------


@dataclass
class ManagedProcess:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    port: int  # an edge's public port (Twilio's routes)
    terminated: bool = False  # SIGTERM sent
    admin_port: int | None = None  # an edge's ADMIN_PORT (metrics, health, the read API)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            self.popen.send_signal(sig)
            if sig == signal.SIGTERM:
                self.terminated = True

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGTERM (unless sent already: a second one means "stop now", and one that lands after
        the handlers are gone kills the process), then SIGKILL after ``timeout_s``; the exit
        code."""
        if not self.terminated:
            self.signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def spawn(
    name: str,
    module: str,
    args: list[str],
    env: Mapping[str, str],
    log_dir: Path,
    port: int,
    admin_port: int | None = None,
) -> ManagedProcess:
    """Start ``python -m module`` with exactly ``env`` added to a minimal environment."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            env={**base, "PYTHONUNBUFFERED": "1", **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C on the demo reaches only the demo
        )
    return ManagedProcess(name, popen, log_path, port, admin_port=admin_port)


#: A process just spawned, the check that says it is ready, and its name for errors.
_Starting = tuple["ManagedProcess", Callable[[], bool], str]


@dataclass
class StackConfig:
    redis_url: str
    log_dir: Path
    key_prefix: str = field(default_factory=lambda: f"sbdemo{uuid.uuid4().hex[:8]}")
    redis_cluster: bool = False  # redis_url is a Redis Cluster node (REDIS_CLUSTER)
    workers: int = 1
    edges: int = 1
    sim_mode: str = "conversation"
    sim_args: list[str] = field(default_factory=list)
    auth_token: str = DEMO_AUTH_TOKEN
    public_url: str = PUBLIC_URL
    log_level: str = "INFO"
    edge_env: dict[str, str] = field(default_factory=dict)
    worker_env: dict[str, str] = field(default_factory=dict)
    # Start the call simulator's stand-in for Twilio's REST API with these arguments (its
    # parties, numbers…), and let the edges place calls through it (POST /calls). None: no.
    twilio_api_args: list[str] | None = None
    # The Realtime endpoint the workers use. None: the stack starts its own simulator
    # (``sim_arguments`` says how), which is what runs when this is set elsewhere.
    sim_url: str | None = None

    @property
    def sim_record(self) -> Path:
        """Where the stack's simulator appends one JSON line per session."""
        return self.log_dir / "realtime-sim-sessions.jsonl"

    def sim_arguments(self, port: int) -> list[str]:
        """The command line of the stack's realtime simulator, listening on ``port``."""
        args = ["--port", str(port), "--mode", self.sim_mode, "--record", str(self.sim_record)]
        return args + self.sim_args


class Stack:
    """The realtime simulator (unless ``sim_url`` names one), edges and workers: started side
    by side, stopped together."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.sim: ManagedProcess | None = None
        self.edges: list[ManagedProcess] = []
        self.workers: list[ManagedProcess] = []
        self.twilio_api: ManagedProcess | None = None
        self._twilio_api_port = free_port() if config.twilio_api_args is not None else None

    @property
    def edge_urls(self) -> list[str]:
        """Each edge's public port: Twilio's routes only."""
        return [f"http://{LOCALHOST}:{edge.port}" for edge in self.edges]

    @property
    def edge_admin_urls(self) -> list[str]:
        """Each edge's admin port: /metrics, /healthz, /readyz, the read API."""
        return [f"http://{LOCALHOST}:{edge.admin_port}" for edge in self.edges]

    @property
    def twilio_api_url(self) -> str:
        """The stand-in for Twilio's REST API (TWILIO_API_BASE_URL of the edges)."""
        assert self._twilio_api_port is not None, "the stack has no twilio_api_args"
        return f"http://{LOCALHOST}:{self._twilio_api_port}"

    @property
    def sim_record(self) -> Path:
        return self.config.sim_record

    @property
    def sim_url(self) -> str:
        if self.config.sim_url is not None:
            return self.config.sim_url
        assert self.sim is not None
        return f"ws://{LOCALHOST}:{self.sim.port}/v1/realtime"

    def _common_env(self) -> dict[str, str]:
        c = self.config
        return {
            "REDIS_URL": c.redis_url,
            "REDIS_CLUSTER": str(c.redis_cluster).lower(),
            "KEY_PREFIX": c.key_prefix,
            "LOG_LEVEL": c.log_level,
        }

    def start(self) -> None:
        """Start every process at once, then wait for each to be ready: none needs another
        to be up to start (ports are chosen first), and side by side they come up in about
        the time of the slowest instead of the sum."""
        c = self.config
        starting: list[_Starting] = []
        if c.sim_url is None:
            port = free_port()
            self.sim = spawn(
                "realtime-sim",
                "services.realtime_sim",
                c.sim_arguments(port),
                {"LOG_LEVEL": c.log_level},
                c.log_dir,
                port,
            )
            starting.append((self.sim, lambda: _port_open(port), "realtime simulator"))
        for _ in range(c.edges):
            starting.append(self._spawn_edge())
            self.edges.append(starting[-1][0])
        if c.twilio_api_args is not None:
            starting.append(self._spawn_twilio_api(c.twilio_api_args))
        for _ in range(c.workers):
            starting.append(self._spawn_worker())
            self.workers.append(starting[-1][0])
        for process, check, what in starting:
            self._wait(process, check, what)

    def _spawn_twilio_api(self, extra: list[str]) -> _Starting:
        c, port = self.config, self._twilio_api_port
        assert port is not None
        args = ["--port", str(port), "--account-sid", DEMO_ACCOUNT_SID, "--auth-token"]
        args += [c.auth_token, "--public-url", c.public_url]
        for url in self.edge_urls:
            args += ["--edge", url]
        self.twilio_api = spawn(
            "twilio-api",
            "services.call_sim.twilio_api",
            args + extra,
            {"LOG_LEVEL": c.log_level},
            c.log_dir,
            port,
        )
        return self.twilio_api, lambda: _port_open(port), "Twilio REST API stand-in"

    def add_edge(self) -> ManagedProcess:
        """Start one more edge; it joins ``edges`` once it is ready."""
        edge, check, what = self._spawn_edge()
        self._wait(edge, check, what)
        self.edges.append(edge)
        return edge

    def _spawn_edge(self) -> _Starting:
        c = self.config
        port, admin_port = free_port(), free_port()
        while admin_port == port:  # the kernel may hand out a port just closed again
            admin_port = free_port()
        env = {
            **self._common_env(),
            "HOST": LOCALHOST,
            "PORT": str(port),
            "ADMIN_PORT": str(admin_port),
            "PUBLIC_URL": c.public_url,
            "TWILIO_AUTH_TOKEN": c.auth_token,
            "EDGE_ID": f"edge-{len(self.edges) + 1}-{port}",
            **self._placing_env(),
            **c.edge_env,
        }
        name = f"edge-{len(self.edges) + 1}"
        edge = spawn(name, "services.edge", [], env, c.log_dir, port, admin_port)
        return edge, lambda: _http_ok(f"http://{LOCALHOST}:{admin_port}/readyz"), edge.name

    def _placing_env(self) -> dict[str, str]:
        """What an edge needs to place calls through the stand-in, when the stack has one."""
        if self._twilio_api_port is None:
            return {}
        return {
            "API_TOKEN": DEMO_API_TOKEN,
            "TWILIO_ACCOUNT_SID": DEMO_ACCOUNT_SID,
            "TWILIO_API_BASE_URL": self.twilio_api_url,
        }

    def add_worker(self) -> ManagedProcess:
        """Start one more worker; it joins ``workers`` once it is ready."""
        worker, check, what = self._spawn_worker()
        self._wait(worker, check, what)
        self.workers.append(worker)
        return worker

    def _spawn_worker(self) -> _Starting:
        c = self.config
        port = free_port()
        index = len(self.workers) + 1
        env = {
            **self._common_env(),
            "OPENAI_REALTIME_URL": self.sim_url,
            "METRICS_PORT": str(port),
            "WORKER_ID": f"worker-{index}-{port}",
            **c.worker_env,
        }
        worker = spawn(f"worker-{index}", "services.realtime_worker", [], env, c.log_dir, port)
        return worker, lambda: _http_ok(f"http://{LOCALHOST}:{port}/metrics"), worker.name

    def _wait(self, process: ManagedProcess, check: Callable[[], bool], what: str) -> None:
        def ready() -> bool:
            if not process.alive():
                raise RuntimeError(
                    f"{what} exited with code {process.popen.returncode}:\n{process.log()[-3000:]}"
                )
            return bool(check())

        try:
            wait_for(ready, 20, what)
        except TimeoutError as exc:
            process.stop(2)
            raise TimeoutError(f"{exc}:\n{process.log()[-3000:]}") from None

    def processes(self) -> list[ManagedProcess]:
        return [
            *self.workers,
            *self.edges,
            *([self.twilio_api] if self.twilio_api else []),
            *([self.sim] if self.sim else []),
        ]

    def stop(self) -> dict[str, int]:
        """Stop everything, all processes signalled at once; the exit code of each."""
        processes = self.processes()
        for process in processes:
            if not process.terminated:
                process.signal(signal.SIGTERM)
        return {p.name: p.stop() for p in processes}

    @contextlib.contextmanager
    def running(self) -> Iterator[Stack]:
        try:
            self.start()
            yield self
        finally:
            self.stop()
