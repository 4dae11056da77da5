"""Metric families exported under the same name by the edge and the workers.

Each process registers them on its own registry; the labels say which hop or process a series
belongs to, so one dashboard query covers both.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = [
    "HOP_EDGE_TO_WORKER",
    "HOP_WORKER_TO_EDGE",
    "RELAY_LATENCY_BUCKETS",
    "redis_errors",
    "redis_reconnects",
    "relay_latency",
]

# Relay hops are a Redis round trip: sub-millisecond on a quiet host, tens of ms under load.
RELAY_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5)
HOP_EDGE_TO_WORKER = "edge_to_worker"
HOP_WORKER_TO_EDGE = "worker_to_edge"


def relay_latency(registry: CollectorRegistry) -> Histogram:
    """Seconds from a message's publication (its ``sent_at``) to its relay by the next hop.

    Measured across hosts with wall clocks: skew between hosts shifts it (negative values are
    counted as 0)."""
    return Histogram(
        "switchboard_relay_latency_seconds",
        "Audio relay latency per hop: edge_to_worker from the edge publishing caller audio to "
        "the worker sending it to the model; worker_to_edge from the worker publishing model "
        "audio to the edge sending it to Twilio.",
        ["hop"],
        buckets=RELAY_LATENCY_BUCKETS,
        registry=registry,
    )


def redis_errors(registry: CollectorRegistry) -> Counter:
    return Counter(
        "switchboard_redis_errors",
        "Failed Redis pipelines (write) and stream reads (read), each retried with backoff.",
        ["process", "op"],
        registry=registry,
    )


def redis_reconnects(registry: CollectorRegistry) -> Counter:
    return Counter(
        "switchboard_redis_reconnects",
        "Redis writes (write) or stream reads (read) flowing again after failing.",
        ["process", "op"],
        registry=registry,
    )
