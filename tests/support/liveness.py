"""Probing every process's ``/livez`` all through an end-to-end test, as a kubelet would: how long
each answer took, and every probe that a live process left unanswered within the probe's
timeout."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from services.devstack import LOCALHOST, ManagedProcess, Stack

__all__ = ["PROBE_TIMEOUT_S", "LivenessLog", "livez", "probing"]

#: The livenessProbe's timeoutSeconds (deploy/k8s/base/edge.yaml and worker.yaml).
PROBE_TIMEOUT_S = 3.0
#: How long after a failed probe its process is judged: long enough for a killed one to be gone.
EXIT_GRACE_S = 1.0


def livez(port: int, timeout_s: float = PROBE_TIMEOUT_S) -> int:
    """GET /livez on ``port`` of loopback: the status. Raises OSError (a timeout included)."""
    with urllib.request.urlopen(f"http://{LOCALHOST}:{port}/livez", timeout=timeout_s) as reply:
        status: int = reply.status
        return status


@dataclass
class LivenessLog:
    latencies_s: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        slowest = max(self.latencies_s, default=0.0)
        return (
            f"{len(self.latencies_s)} /livez probes answered, slowest {slowest * 1000:.0f} ms; "
            f"{len(self.failures)} unanswered"
        )


def _probe_port(process: ManagedProcess) -> int | None:
    # An edge answers on its admin port, a worker on its METRICS_PORT (its ``port``).
    return process.admin_port if process.name.startswith("edge") else process.port


@contextmanager
def probing(stack: Stack, interval_s: float = 0.5) -> Iterator[LivenessLog]:
    """Probe each edge's and worker's /livez every ``interval_s`` from a thread of its own (the
    test's event loop, busy with the calls, does not slow it), until the block ends. A probe
    that fails counts only if its process is still alive ``EXIT_GRACE_S`` later (a process the
    test killed does not answer, by design)."""
    log = LivenessLog()
    done = threading.Event()

    def run() -> None:
        while not done.is_set():
            for process in [*stack.edges, *stack.workers]:
                port = _probe_port(process)
                if port is None:
                    continue
                started = time.monotonic()
                try:
                    livez(port)
                except OSError as exc:
                    # A process the test SIGKILLs resets its sockets while it exits, a moment
                    # before it is gone: judge it once that moment has passed.
                    done.wait(EXIT_GRACE_S)
                    if process.alive() and process in stack.processes():
                        log.failures.append(f"{process.name}: {exc}")
                else:
                    log.latencies_s.append(time.monotonic() - started)
            done.wait(interval_s)

    prober = threading.Thread(target=run, name="livez-prober", daemon=True)
    prober.start()
    try:
        yield log
    finally:
        done.set()
        prober.join()
