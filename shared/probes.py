"""The liveness route both services answer on their private port (the edge's ADMIN_PORT, the
worker's METRICS_PORT), from their event loop: the path the Kubernetes probes, the compose
healthchecks and the Dockerfile's HEALTHCHECK name."""

from __future__ import annotations

from typing import Final

__all__ = ["LIVEZ_PATH"]

LIVEZ_PATH: Final = "/livez"
