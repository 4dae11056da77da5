"""Prometheus metrics of a realtime worker, declared in one place on a given registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared import metrics as shared_metrics

__all__ = ["WorkerMetrics"]


@dataclass(frozen=True, slots=True)
class WorkerMetrics:
    active_calls: Gauge
    capacity: Gauge
    calls: Counter
    audio_in_bytes: Counter
    audio_out_bytes: Counter
    realtime_errors: Counter
    session_reconnects: Counter
    rate_limit_remaining: Gauge
    malformed: Counter
    redis_up: Gauge
    rollovers: Counter
    takeovers: Counter
    leases_restored: Counter
    fenced_writes: Counter
    handoffs: Counter
    stale_audio_skipped_bytes: Counter
    barge_ins: Counter
    unheard_ms: Histogram
    late_audio_dropped_bytes: Counter
    tokens: Counter
    dtmf_digits: Counter
    relay_latency: Histogram
    redis_errors: Counter
    redis_reconnects: Counter
    speech_to_clear: Histogram
    tool_calls: Counter
    call_setup: Counter
    transfers: Counter
    calls_by_agent: Counter
    answered_by: Counter

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
            session_reconnects=Counter(
                "switchboard_worker_session_reconnects",
                "Realtime sessions reopened (seeded with the conversation so far) after one "
                "dropped mid-call, by why it dropped.",
                ["reason"],
                registry=registry,
            ),
            rate_limit_remaining=Gauge(
                "switchboard_worker_realtime_rate_limit_remaining",
                "The Realtime API's remaining requests or tokens, as its last rate_limits.updated "
                "event on this worker said.",
                ["limit"],
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
                "Live calls this worker took over (its worker died, froze or handed it off).",
                registry=registry,
            ),
            leases_restored=Counter(
                "switchboard_worker_leases_restored",
                "Calls whose lease this worker found missing and took back, writing its part "
                "of the call record again: Redis restarted empty or failed over to a replica "
                "without them (replication is asynchronous), or the lease lapsed while this "
                "worker was held up and nobody took the call.",
                registry=registry,
            ),
            fenced_writes=Counter(
                "switchboard_worker_fenced_writes",
                "Writes toward a caller that Redis refused because another worker holds the "
                "call's lease (this worker was paused past it).",
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
            barge_ins=Counter(
                "switchboard_worker_barge_ins",
                "Replies cut short because the caller spoke over them (clear + truncate).",
                registry=registry,
            ),
            unheard_ms=Histogram(
                "switchboard_worker_barge_in_unheard_ms",
                "At a barge-in, milliseconds of the reply generated but never heard by the "
                "caller: what the truncate removed from the model's memory.",
                buckets=(50, 100, 250, 500, 1000, 2000, 4000, 8000, 16000, 32000),
                registry=registry,
            ),
            late_audio_dropped_bytes=Counter(
                "switchboard_worker_late_audio_dropped_bytes",
                "Audio of interrupted replies that arrived after the barge-in and was dropped.",
                registry=registry,
            ),
            tokens=Counter(
                "switchboard_worker_tokens",
                "Tokens used by model responses (response.done usage), by direction and modality.",
                ["direction", "modality"],
                registry=registry,
            ),
            dtmf_digits=Counter(
                "switchboard_worker_dtmf_digits",
                "Keypad digits passed on to the model.",
                registry=registry,
            ),
            relay_latency=shared_metrics.relay_latency(registry),
            redis_errors=shared_metrics.redis_errors(registry),
            redis_reconnects=shared_metrics.redis_reconnects(registry),
            speech_to_clear=Histogram(
                "switchboard_worker_speech_to_clear_seconds",
                "At a barge-in, from handling input_audio_buffer.speech_started to publishing "
                "the ClearPlayback that stops the reply at the caller's end.",
                buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
                registry=registry,
            ),
            tool_calls=Counter(
                "switchboard_worker_tool_calls",
                "Calls the model made to tools from TOOLS_FILE, by tool and outcome (ok, "
                "timeout, unreachable, http_error, bad_arguments).",
                ["tool", "outcome"],
                registry=registry,
            ),
            call_setup=Counter(
                "switchboard_worker_call_setup",
                "Answers of the set-up hook (CALL_SETUP_URL), by outcome: ok, timeout, error, "
                "bad_answer (all but ok: the agent's defaults were used).",
                ["outcome"],
                registry=registry,
            ),
            transfers=Counter(
                "switchboard_worker_transfers",
                "Transfers to a person the model asked for, by agent and outcome: accepted "
                "(cold or warm), or refused (bad arguments, unknown target: the call goes on).",
                ["agent", "outcome"],
                registry=registry,
            ),
            calls_by_agent=Counter(
                "switchboard_worker_agent_calls",
                "Calls (or returns from a failed transfer) this worker began serving, by agent.",
                ["agent"],
                registry=registry,
            ),
            answered_by=Counter(
                "switchboard_worker_answered_by",
                "Outbound calls with machine detection, by who answered (Twilio's AnsweredBy) "
                "and what the agent did: greet, voicemail (left the message) or hangup.",
                ["answered_by", "action"],
                registry=registry,
            ),
        )
