"""Prometheus metrics of a realtime worker, declared in one place on a given registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["WorkerMetrics"]


@dataclass(frozen=True, slots=True)
class WorkerMetrics:
    active_calls: Gauge
    capacity: Gauge
    calls: Counter
    audio_in_bytes: Counter
    audio_out_bytes: Counter
    realtime_errors: Counter
    malformed: Counter
    redis_up: Gauge
    rollovers: Counter
    takeovers: Counter
    handoffs: Counter
    stale_audio_skipped_bytes: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> WorkerMetrics:
        return cls(
            active_calls=Gauge(
                "switchboard_worker_active_calls",
                "Calls this worker holds a Realtime session for.",
                registry=registry,
            ),
            capacity=Gauge(
                "switchboard_worker_capacity",
                "Calls this worker may hold at once (MAX_CALLS).",
                registry=registry,
            ),
            calls=Counter(
                "switchboard_worker_calls",
                "Calls this worker finished, by outcome.",
                ["outcome"],
                registry=registry,
            ),
            audio_in_bytes=Counter(
                "switchboard_worker_audio_in_bytes",
                "μ-law bytes of caller audio sent to the Realtime API.",
                registry=registry,
            ),
            audio_out_bytes=Counter(
                "switchboard_worker_audio_out_bytes",
                "μ-law bytes of model audio published toward the caller.",
                registry=registry,
            ),
            realtime_errors=Counter(
                "switchboard_worker_realtime_errors",
                "Error events and failures of Realtime sessions, by code.",
                ["code"],
                registry=registry,
            ),
            malformed=Counter(
                "switchboard_worker_malformed_input",
                "Malformed events from the Realtime server or entries from Redis, by kind.",
                ["kind"],
                registry=registry,
            ),
            redis_up=Gauge(
                "switchboard_worker_redis_up",
                "1 when the worker's Redis reads and writes are flowing.",
                registry=registry,
            ),
            rollovers=Counter(
                "switchboard_worker_session_rollovers",
                "Calls moved to a fresh Realtime session after SESSION_MAX.",
                registry=registry,
            ),
            takeovers=Counter(
                "switchboard_worker_takeovers",
                "Live calls this worker took over (a lapsed lease, or a handoff).",
                registry=registry,
            ),
            handoffs=Counter(
                "switchboard_worker_handoffs",
                "Calls this worker handed back to the dispatch stream while draining.",
                registry=registry,
            ),
            stale_audio_skipped_bytes=Counter(
                "switchboard_worker_stale_audio_skipped_bytes",
                "Caller audio skipped on takeover for being older than TAKEOVER_BACKLOG_MS.",
                registry=registry,
            ),
        )
