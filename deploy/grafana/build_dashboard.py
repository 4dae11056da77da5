"""Write deploy/grafana/dashboards/switchboard.json (the Grafana dashboard) from this file.

    .venv/bin/python deploy/grafana/build_dashboard.py

Edit the panels here, not in the JSON. tests/deploy checks every query against the metrics the
edge and the workers register.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards" / "switchboard.json"
DS = {"type": "prometheus", "uid": "${datasource}"}
WIDTH = 24


class Layout:
    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.x = 0
        self.y = 0
        self.row_height = 0

    def row(self, title: str) -> None:
        self.newline()
        self.panels.append(
            {
                "type": "row",
                "title": title,
                "collapsed": False,
                "id": len(self.panels) + 1,
                "gridPos": {"h": 1, "w": WIDTH, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.y += 1

    def newline(self) -> None:
        if self.x:
            self.y += self.row_height
            self.x = 0
            self.row_height = 0

    def add(
        self,
        title: str,
        targets: list[tuple[str, str]],
        *,
        unit: str = "short",
        width: int = 12,
        height: int = 8,
        kind: str = "timeseries",
        description: str = "",
        stack: bool = False,
    ) -> None:
        if self.x + width > WIDTH:
            self.newline()
        panel: dict[str, Any] = {
            "type": kind,
            "title": title,
            "description": description,
            "id": len(self.panels) + 1,
            "datasource": DS,
            "gridPos": {"h": height, "w": width, "x": self.x, "y": self.y},
            "targets": [
                {"datasource": DS, "refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
                for i, (expr, legend) in enumerate(targets)
            ],
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {},
        }
        if kind == "timeseries":
            panel["fieldConfig"]["defaults"]["custom"] = {
                "drawStyle": "line",
                "fillOpacity": 10,
                "stacking": {"mode": "normal" if stack else "none", "group": "A"},
            }
            panel["options"] = {
                "legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull"]},
                "tooltip": {"mode": "multi", "sort": "desc"},
            }
        if kind == "table":
            for target in panel["targets"]:
                target["instant"] = True
                target["format"] = "table"
        self.panels.append(panel)
        self.x += width
        self.row_height = max(self.row_height, height)


def quantiles(
    metric: str, qs: tuple[float, ...] = (0.5, 0.95, 0.99), by: str = "", legend: str = ""
) -> list[tuple[str, str]]:
    """``histogram_quantile`` targets of a histogram over 5 minutes, one per quantile."""
    group = f"le, {by}" if by else "le"
    return [
        (
            f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket[5m])))",
            f"p{round(q * 100)}{' ' + legend if legend else ''}",
        )
        for q in qs
    ]


def build() -> dict[str, Any]:
    d = Layout()
    d.row("Live calls")
    d.add(
        "Bytes out per live call (rate)",
        [("sum by (call_sid) (rate(switchboard_call_audio_out_bytes_total[1m]))", "{{call_sid}}")],
        unit="Bps",
        width=16,
        description="μ-law bytes the edge sends to Twilio for each live call: about 8000 B/s "
        "while the model speaks, 0 while it listens. Series vanish when the call ends.",
    )
    d.add(
        "Bytes out per live call (total)",
        [("sum by (call_sid) (switchboard_call_audio_out_bytes_total)", "{{call_sid}}")],
        unit="bytes",
        width=8,
        kind="table",
        description="Bytes sent to Twilio so far, per live call (8000 bytes = 1 s of audio).",
    )
    d.add(
        "Active calls per edge",
        [("sum by (instance) (switchboard_edge_active_calls)", "{{instance}}")],
        stack=True,
    )
    d.add(
        "Active calls per worker",
        [
            ("sum by (instance) (switchboard_worker_active_calls)", "{{instance}}"),
            ("sum(switchboard_worker_capacity)", "capacity (sum of MAX_CALLS)"),
        ],
    )
    d.add(
        "Worker capacity in use",
        [("sum(switchboard_worker_active_calls) / sum(switchboard_worker_capacity)", "in use")],
        unit="percentunit",
        width=8,
        kind="stat",
    )
    d.add(
        "Call outcomes (edge)",
        [("sum by (outcome) (increase(switchboard_edge_calls_total[5m]))", "{{outcome}}")],
        width=8,
        stack=True,
        description="Streams that ended on the edges in the last 5 minutes, by outcome.",
    )
    d.add(
        "Call outcomes (workers)",
        [("sum by (outcome) (increase(switchboard_worker_calls_total[5m]))", "{{outcome}}")],
        width=8,
        stack=True,
    )
    d.row("Audio")
    d.add(
        "Audio byte rates",
        [
            ("sum(rate(switchboard_edge_audio_in_bytes_total[1m]))", "edge in (from callers)"),
            ("sum(rate(switchboard_worker_audio_in_bytes_total[1m]))", "worker in (to model)"),
            ("sum(rate(switchboard_worker_audio_out_bytes_total[1m]))", "worker out (from model)"),
            ("sum(rate(switchboard_edge_audio_out_bytes_total[1m]))", "edge out (to Twilio)"),
        ],
        unit="Bps",
        description="Each direction should match hop to hop: a gap between edge in and worker "
        "in, or worker out and edge out, is audio lost or queued on the way.",
    )
    d.add(
        "Audio byte rates per process",
        [
            (
                "sum by (instance) (rate(switchboard_edge_audio_out_bytes_total[1m]))",
                "out {{instance}}",
            ),
            (
                "sum by (instance) (rate(switchboard_edge_audio_in_bytes_total[1m]))",
                "in {{instance}}",
            ),
            (
                "sum by (instance) (rate(switchboard_worker_audio_out_bytes_total[1m]))",
                "model {{instance}}",
            ),
        ],
        unit="Bps",
    )
    d.row("Latency and playback")
    d.add(
        "Relay latency per hop",
        quantiles("switchboard_relay_latency_seconds", by="hop", legend="{{hop}}"),
        unit="s",
        description="From a hop publishing audio to Redis to the next process relaying it: "
        "edge_to_worker (caller audio reaching the model's socket), worker_to_edge (model audio "
        "sent to Twilio). Wall clocks of two hosts: skew shifts it.",
    )
    d.add(
        "Audio queued at Twilio (mark round-trip)",
        quantiles("switchboard_edge_mark_round_trip_seconds", (0.5, 0.95)),
        unit="s",
        description="From sending a mark to Twilio to its echo: how much model audio was "
        "queued ahead of it at Twilio. Replies are generated faster than they play, so seconds "
        "are normal while the model speaks.",
    )
    d.add(
        "Speech start → clear",
        quantiles("switchboard_worker_speech_to_clear_seconds", (0.5, 0.95)),
        unit="s",
        width=8,
        description="At a barge-in, from the worker handling speech_started to publishing the "
        "clear that stops the reply at the caller's end.",
    )
    d.add(
        "Webhook → first model audio",
        quantiles("switchboard_edge_webhook_to_first_audio_seconds", (0.5, 0.95)),
        unit="s",
        width=8,
        description="From the voice webhook to the call's first model audio sent to Twilio: "
        "the greeting, or without one the first reply (which waits for the caller to speak).",
    )
    d.add(
        "Dispatch wait",
        quantiles("switchboard_edge_dispatch_wait_seconds", (0.5, 0.95)),
        unit="s",
        width=8,
        description="From a stream attaching (or a re-dispatch) to a worker holding the call.",
    )
    d.add(
        "Barge-ins",
        [
            ("sum(rate(switchboard_worker_barge_ins_total[5m])) * 60", "barge-ins per minute"),
            (
                "sum(rate(switchboard_worker_late_audio_dropped_bytes_total[5m])) / 8000 * 60",
                "late audio dropped (s per minute)",
            ),
        ],
        description="Replies the caller spoke over (clear + truncate), and the audio of those "
        "replies that arrived after the clear and was dropped.",
    )
    d.add(
        "Unheard audio at barge-in (truncation)",
        quantiles("switchboard_worker_barge_in_unheard_ms", (0.5, 0.95)),
        unit="ms",
        description="Generated but never heard at each barge-in: what the truncate removed "
        "from the model's memory.",
    )
    d.row("Errors")
    d.add(
        "Realtime errors by code",
        [("sum by (code) (rate(switchboard_worker_realtime_errors_total[5m]))", "{{code}}")],
        unit="ops",
        width=8,
        stack=True,
        description="Error events and failed Realtime sessions; format_mismatch means the "
        "server did not confirm audio/pcmu.",
    )
    d.add(
        "Realtime sessions reopened, by why they dropped",
        [
            (
                "sum by (reason) (increase(switchboard_worker_session_reconnects_total[5m]))",
                "{{reason}}",
            )
        ],
        width=8,
        stack=True,
        description="Model sessions that dropped mid-call and were replaced by a new one seeded "
        "with the conversation (REALTIME_RECONNECTS a minute per call at most).",
    )
    d.add(
        "Malformed or dropped input by kind",
        [
            ("sum by (kind) (rate(switchboard_edge_malformed_input_total[5m]))", "edge {{kind}}"),
            (
                "sum by (kind) (rate(switchboard_worker_malformed_input_total[5m]))",
                "worker {{kind}}",
            ),
            (
                "sum by (reason) (rate(switchboard_edge_media_dropped_total[5m]))",
                "edge media dropped: {{reason}}",
            ),
        ],
        unit="ops",
        width=8,
        stack=True,
    )
    d.add(
        "Audio format faults by kind",
        [
            (
                "sum by (kind) (increase(switchboard_edge_format_mismatch_total[15m]))",
                "{{kind}}",
            )
        ],
        width=8,
        stack=True,
        description="Calls whose first model audio was not μ-law speech (pcm16, base64_text, "
        "wav_header; silence is a warning), in the last 15 minutes.",
    )
    d.add(
        "Refused requests by route and reason",
        [
            (
                "sum by (route, reason) (rate(switchboard_edge_rejected_requests_total[5m]))",
                "{{route}} {{reason}}",
            )
        ],
        unit="ops",
        width=8,
        stack=True,
    )
    d.row("Redis and continuity")
    d.add(
        "Redis health",
        [
            ("min by (instance) (switchboard_edge_redis_up)", "edge {{instance}}"),
            ("min by (instance) (switchboard_worker_redis_up)", "worker {{instance}}"),
        ],
        width=8,
        description="1: the process's last Redis check succeeded.",
    )
    d.add(
        "Redis errors and reconnects",
        [
            (
                "sum by (process, op) (rate(switchboard_redis_errors_total[5m]))",
                "errors {{process}} {{op}}",
            ),
            (
                "sum by (process, op) (increase(switchboard_redis_reconnects_total[5m]))",
                "recoveries in 5m {{process}} {{op}}",
            ),
        ],
        width=8,
        description="Failed Redis pipelines (write) and stream reads (read), retried with "
        "backoff; a recovery is the loop flowing again after failing.",
    )
    d.add(
        "Calls moved between processes",
        [
            (
                "sum(increase(switchboard_edge_calls_redispatched_total[5m]))",
                "redispatched (lease lapsed)",
            ),
            ("sum(increase(switchboard_worker_takeovers_total[5m]))", "taken over"),
            (
                "sum(increase(switchboard_worker_leases_restored_total[5m]))",
                "lease restored (Redis lost it)",
            ),
            ("sum(increase(switchboard_worker_handoffs_total[5m]))", "handed off (drain)"),
            ("sum(increase(switchboard_worker_session_rollovers_total[5m]))", "session rollovers"),
        ],
        width=8,
    )
    d.add(
        "Stale caller audio skipped on takeover",
        [("sum(rate(switchboard_worker_stale_audio_skipped_bytes_total[5m]))", "skipped")],
        unit="Bps",
        width=8,
    )
    d.row("Call control")
    d.add(
        "Calls by agent",
        [
            (
                "sum by (agent) (increase(switchboard_worker_agent_calls_total[15m]))",
                "{{agent}}",
            )
        ],
        width=8,
        stack=True,
        description="Calls each agent (AGENTS_FILE) began serving in the last 15 minutes, "
        "returns from a failed transfer included.",
    )
    d.add(
        "Transfers to a person",
        [
            (
                "sum by (outcome) (increase(switchboard_edge_transfers_total[15m]))",
                "{{outcome}}",
            ),
            (
                'sum(increase(switchboard_worker_transfers_total{outcome="refused"}[15m]))',
                "refused (bad target)",
            ),
        ],
        width=8,
        description="Dials started (cold, warm) and how they ended: completed or answered "
        "(the person took the call), busy, no-answer, failed, canceled (back to the AI).",
    )
    d.add(
        "Set-up hook answers",
        [
            (
                "sum by (outcome) (increase(switchboard_worker_call_setup_total[15m]))",
                "{{outcome}}",
            )
        ],
        width=8,
        stack=True,
        description="CALL_SETUP_URL's answers; timeout, error and bad_answer calls were served "
        "with the agent's defaults.",
    )
    return {
        "title": "Switchboard",
        "uid": "switchboard",
        "description": "Twilio ⇄ OpenAI Realtime bridge: live calls, audio, errors, Redis.",
        "tags": ["switchboard"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "10s",
        "time": {"from": "now-30m", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {"text": "Prometheus", "value": "prometheus"},
                    "hide": 0,
                }
            ]
        },
        "annotations": {"list": []},
        "panels": d.panels,
    }


def main() -> int:
    OUT.write_text(json.dumps(build(), indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
