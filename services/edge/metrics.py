"""Prometheus metrics of the edge, declared in one place on a given registry.

Per-call series (labelled ``call_sid``) are created when a stream attaches and removed when it
ends, so their number is bounded by live calls. Totals carry no per-call label.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared import metrics as shared_metrics

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
    dispatch_wait: Histogram
    format_mismatch: Counter
    media_dropped: Counter
    relay_latency: Histogram
    redis_errors: Counter
    redis_reconnects: Counter
    mark_round_trip: Histogram
    webhook_to_first_audio: Histogram
    recording_bytes: Counter
    recording_segments: Counter
    recording_dropped_bytes: Counter
    recordings_deleted: Counter
    transfers: Counter
    outbound_requests: Counter
    outbound_status: Counter
    answered_by: Counter
    twilio_recordings: Counter
    listener_refused: Counter

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
            dispatch_wait=Histogram(
                "switchboard_edge_dispatch_wait_seconds",
                "From a call's stream attaching (or its re-dispatch) to a worker holding it.",
                buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20),
                registry=registry,
            ),
            format_mismatch=Counter(
                "switchboard_edge_format_mismatch",
                "Calls whose first outbound audio is not μ-law speech, by likely cause "
                "(pcm16, base64_text, wav_header; silence is a warning).",
                ["kind"],
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
            relay_latency=shared_metrics.relay_latency(registry),
            redis_errors=shared_metrics.redis_errors(registry),
            redis_reconnects=shared_metrics.redis_reconnects(registry),
            mark_round_trip=Histogram(
                "switchboard_edge_mark_round_trip_seconds",
                "From sending a mark to Twilio to Twilio echoing it (the mark's audio played): "
                "how much audio is queued at Twilio. Marks voided by a clear are not counted.",
                buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32),
                registry=registry,
            ),
            webhook_to_first_audio=Histogram(
                "switchboard_edge_webhook_to_first_audio_seconds",
                "From the voice webhook answering a call to the edge sending the call's first "
                "model audio to Twilio (the greeting, or the first reply), once per call.",
                buckets=(0.25, 0.5, 1, 1.5, 2, 3, 5, 8, 13, 20, 30, 60),
                registry=registry,
            ),
            recording_bytes=Counter(
                "switchboard_edge_recording_bytes",
                "Bytes appended to the call recordings under RECORDINGS_DIR (audio and record "
                "headers).",
                registry=registry,
            ),
            recording_segments=Counter(
                "switchboard_edge_recording_segments",
                "Streams recorded under RECORDINGS_DIR (one segment file per stream attached).",
                registry=registry,
            ),
            recording_dropped_bytes=Counter(
                "switchboard_edge_recording_dropped_bytes",
                "Recording bytes not written, by reason: queue_full (the disk is slower than "
                "the calls), write_error. The calls go on.",
                ["reason"],
                registry=registry,
            ),
            recordings_deleted=Counter(
                "switchboard_edge_recordings_deleted",
                "Call recordings deleted by the retention sweep (CALL_RECORD_RETENTION).",
                registry=registry,
            ),
            transfers=Counter(
                "switchboard_edge_transfers",
                "Transfers to a person, by stage: dialed_cold, dialed_warm, then Twilio's "
                "DialCallStatus (completed, answered: connected; busy, no-answer, failed, "
                "canceled: the caller came back to the AI) or caller_left.",
                ["outcome"],
                registry=registry,
            ),
            listener_refused=Counter(
                "switchboard_edge_listener_refused",
                "Requests and WebSocket upgrades answered 404 because their listener does not "
                "serve their path, by listener: public (anything outside /twilio/: scans, or a "
                "client that wants ADMIN_PORT), admin (/twilio/…: a proxy pointed at the wrong "
                "port).",
                ["listener"],
                registry=registry,
            ),
            outbound_requests=Counter(
                "switchboard_edge_outbound_requests",
                "POST /calls, by outcome: placed, unauthorized, read_only_token, invalid, "
                "limit (OUTBOUND_MAX_CONCURRENT), twilio_refused, twilio_unreachable, "
                "not_ready.",
                ["outcome"],
                registry=registry,
            ),
            outbound_status=Counter(
                "switchboard_edge_outbound_call_status",
                "Twilio's status callbacks for outbound calls, by CallStatus (initiated, "
                "ringing, in-progress, completed, no-answer, busy, failed, canceled).",
                ["status"],
                registry=registry,
            ),
            answered_by=Counter(
                "switchboard_edge_answered_by",
                "Outbound calls by who answered, per Twilio's answering-machine detection.",
                ["answered_by"],
                registry=registry,
            ),
            twilio_recordings=Counter(
                "switchboard_edge_twilio_recordings",
                "Twilio's recording status callbacks, by RecordingStatus.",
                ["status"],
                registry=registry,
            ),
        )
