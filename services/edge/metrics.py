"""Prometheus metrics of the edge, declared in one place on a given registry.

Per-call series (labelled ``call_sid``) are created when a stream attaches and removed when it
ends, so their number is bounded by live calls. Totals carry no per-call label.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["EdgeMetrics"]


@dataclass(frozen=True, slots=True)
class EdgeMetrics:
    active_calls: Gauge
    calls: Counter
    audio_in_bytes: Counter
    audio_out_bytes: Counter
    call_audio_out_bytes: Counter
    malformed: Counter
    rejected: Counter
    redis_up: Gauge
    redispatched: Counter
    media_dropped: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> EdgeMetrics:
        return cls(
            active_calls=Gauge(
                "switchboard_edge_active_calls",
                "Media streams attached to this edge.",
                registry=registry,
            ),
            calls=Counter(
                "switchboard_edge_calls",
                "Streams that ended on this edge, by outcome.",
                ["outcome"],
                registry=registry,
            ),
            audio_in_bytes=Counter(
                "switchboard_edge_audio_in_bytes",
                "μ-law bytes received from callers and published to Redis.",
                registry=registry,
            ),
            audio_out_bytes=Counter(
                "switchboard_edge_audio_out_bytes",
                "μ-law bytes sent to Twilio.",
                registry=registry,
            ),
            call_audio_out_bytes=Counter(
                "switchboard_call_audio_out_bytes",
                "μ-law bytes sent to Twilio, per live call.",
                ["call_sid"],
                registry=registry,
            ),
            malformed=Counter(
                "switchboard_edge_malformed_input",
                "Messages from Twilio or Redis that were dropped, by kind of fault.",
                ["kind"],
                registry=registry,
            ),
            rejected=Counter(
                "switchboard_edge_rejected_requests",
                "Webhooks and stream upgrades refused, by route and reason.",
                ["route", "reason"],
                registry=registry,
            ),
            redispatched=Counter(
                "switchboard_edge_calls_redispatched",
                "Calls put back on the dispatch stream because their worker's lease lapsed.",
                registry=registry,
            ),
            media_dropped=Counter(
                "switchboard_edge_media_dropped",
                "Inbound media frames dropped by a limit, by reason.",
                ["reason"],
                registry=registry,
            ),
            redis_up=Gauge(
                "switchboard_edge_redis_up",
                "1 when the edge's last Redis health check succeeded.",
                registry=registry,
            ),
        )
