"""Ports for the servers tests start, each pytest process from a range of its own.

``services.devstack.free_port`` asks the kernel for a free port and closes it; the server that
port is for binds it a moment later. Under pytest-xdist several processes start servers at the
same time, and two of them can be handed the same port in between, or the kernel can give it
to an outgoing connection meanwhile (it takes those from the same ephemeral range): a
simulator then fails to bind while its stack's readiness check finds another test's server on
that port. So the tests hand out ports below the ephemeral range (32768–60999 on Linux), from a
block per xdist worker, each checked free before use.
"""

from __future__ import annotations

import os
import re
import socket

__all__ = ["PortAllocator", "allocator"]

FIRST_PORT = 20_000
LAST_PORT = 32_767  # below the kernel's ephemeral range
BLOCK = 1_000  # ports per pytest process (gw0 … gw11 get blocks of their own)


def _worker_index() -> int:
    match = re.fullmatch(r"gw(\d+)", os.environ.get("PYTEST_XDIST_WORKER", ""))
    return int(match.group(1)) if match else 0


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class PortAllocator:
    """Hands out the ports of one block in turn, skipping those in use."""

    def __init__(self, index: int) -> None:
        blocks = (LAST_PORT + 1 - FIRST_PORT) // BLOCK
        self.first = FIRST_PORT + (index % blocks) * BLOCK
        self._next = self.first

    def __call__(self) -> int:
        for _ in range(BLOCK):
            port = self._next
            self._next = self.first + (self._next + 1 - self.first) % BLOCK
            if _bindable(port):
                return port
        raise RuntimeError(f"no free port in {self.first}-{self.first + BLOCK - 1}")


#: This process's ports (``free_port`` for devstack, the bench and the tests).
allocator = PortAllocator(_worker_index())
