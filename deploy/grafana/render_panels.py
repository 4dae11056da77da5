"""Render docs/dashboard.png: the Grafana dashboard's quantities, plotted from a short real run.

    .venv/bin/python deploy/grafana/render_panels.py [--out docs/dashboard.png]

Starts a stack (services.devstack: realtime simulator in conversation mode, one edge, two
workers, a private redis-server), places waves of simulated calls whose callers talk over the
model's replies (barge-ins), restarts Redis once in the middle (Redis errors and recoveries),
scrapes every process's /metrics each second, and plots the same queries as the dashboard's
panels (rates and histogram quantiles over a sliding window, as PromQL's rate() and
histogram_quantile() compute them). Needs matplotlib (the "bench" extra) and redis-server.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from services.call_sim import CallConfig, CallReport, place_calls
from services.devstack import PUBLIC_URL, Stack, StackConfig, start_redis_server
from shared.audio import SILENCE_BYTE

ROOT = Path(__file__).resolve().parents[2]
CALLER = (ROOT / "services/call_sim/assets/caller.ulaw").read_bytes()
# Speak, let the reply play for about 2 s, speak over it: one barge-in per call.
BARGE_IN_AUDIO = CALLER + bytes([SILENCE_BYTE]) * 20_000 + CALLER
WINDOW_S = 10.0  # the window of rate() and histogram_quantile() (the dashboard uses 1m/5m)

Labels = tuple[tuple[str, str], ...]


@dataclass
class Scrape:
    at: float
    samples: dict[tuple[str, Labels], float] = field(default_factory=dict)


class Scraper:
    """Scrapes every target once a second in a thread until stopped."""

    def __init__(self, targets: dict[str, str]) -> None:
        self.targets = targets
        self.scrapes: list[Scrape] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started = time.monotonic()

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            scrape = Scrape(time.monotonic() - self.started)
            for instance, url in self.targets.items():
                try:
                    with urllib.request.urlopen(f"{url}/metrics", timeout=1) as response:
                        text = response.read().decode()
                except OSError:
                    continue
                for family in text_string_to_metric_families(text):
                    for s in family.samples:
                        labels = tuple(sorted({**s.labels, "instance": instance}.items()))
                        scrape.samples[(s.name, labels)] = s.value
            self.scrapes.append(scrape)
            self._stop.wait(1.0)


class Series:
    """PromQL-like queries over the scrapes."""

    def __init__(self, scrapes: list[Scrape]) -> None:
        self.scrapes = scrapes
        self.t = [s.at for s in scrapes]

    def _select(
        self, scrape: Scrape, name: str, match: dict[str, str]
    ) -> Iterable[tuple[dict[str, str], float]]:
        for (sample, labels), value in scrape.samples.items():
            if sample == name and all(dict(labels).get(k) == v for k, v in match.items()):
                yield dict(labels), value

    def _earlier(self, i: int) -> int:
        j = i
        while j > 0 and self.scrapes[i].at - self.scrapes[j - 1].at <= WINDOW_S:
            j -= 1
        return j

    def sum_by(
        self, name: str, by: tuple[str, ...] = (), rate: bool = False, **match: str
    ) -> dict[str, list[float]]:
        """sum by (by) (name) or sum by (by) (rate(name[WINDOW])); counter resets ignored."""
        out: dict[str, list[float]] = defaultdict(lambda: [math.nan] * len(self.scrapes))
        for i, scrape in enumerate(self.scrapes):
            totals: dict[str, float] = defaultdict(float)
            if rate:
                j = self._earlier(i)
                if j == i:
                    continue
                span = scrape.at - self.scrapes[j].at
                before = {
                    tuple(sorted(lb.items())): v
                    for lb, v in self._select(self.scrapes[j], name, match)
                }
                for lb, v in self._select(scrape, name, match):
                    delta = v - before.get(tuple(sorted(lb.items())), 0.0)
                    totals[_group(lb, by)] += max(0.0, delta) / span
            else:
                for lb, v in self._select(scrape, name, match):
                    totals[_group(lb, by)] += v
            for key, value in totals.items():
                out[key][i] = value
        return dict(out)

    def quantile(
        self, q: float, histogram: str, by: tuple[str, ...] = ()
    ) -> dict[str, list[float]]:
        """histogram_quantile(q, sum by (le, by) (rate(histogram_bucket[WINDOW])))."""
        out: dict[str, list[float]] = defaultdict(lambda: [math.nan] * len(self.scrapes))
        rates = self.sum_by(f"{histogram}_bucket", by + ("le",), rate=True)
        grouped: dict[str, dict[float, list[float]]] = defaultdict(dict)
        for key, values in rates.items():
            parts = dict(p.split("=", 1) for p in key.split(",") if "=" in p)
            le = float(parts.pop("le"))
            group = ",".join(f"{k}={v}" for k, v in sorted(parts.items()))
            grouped[group][le] = values
        for group, buckets in grouped.items():
            bounds = sorted(buckets)
            for i in range(len(self.scrapes)):
                counts = [buckets[b][i] for b in bounds]
                if any(math.isnan(c) for c in counts) or counts[-1] <= 0:
                    continue
                label = " ".join(v for _, v in (p.split("=", 1) for p in group.split(",") if p))
                out[label][i] = _histogram_quantile(q, bounds, counts)
        return dict(out)


def _group(labels: dict[str, str], by: tuple[str, ...]) -> str:
    return ",".join(f"{k}={labels.get(k, '')}" for k in by)


def _histogram_quantile(q: float, bounds: list[float], counts: list[float]) -> float:
    """Prometheus's interpolation: linear within the bucket holding the rank."""
    rank = q * counts[-1]
    lower, below = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = bound, count
    return lower


async def run_calls(
    stack: Stack, waves: int, per_wave: int, redis_bounce: Callable[[], None]
) -> list[CallReport]:
    def config() -> CallConfig:
        return CallConfig(
            edge_urls=stack.edge_urls,
            public_url=PUBLIC_URL,
            auth_token=stack.config.auth_token,
            caller_audio=BARGE_IN_AUDIO,
            hold_s=6.0,
        )

    reports: list[CallReport] = []
    for wave in range(waves):
        if wave == waves // 2:
            await asyncio.to_thread(redis_bounce)
            await asyncio.sleep(6.0)  # the processes' reconnect backoff; edges decline till then
        reports += await place_calls([config() for _ in range(per_wave)])
        await asyncio.sleep(2.0)
    return reports


def plot(series: Series, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = series.t
    panels: list[tuple[str, str, dict[str, list[float]]]] = []

    def add(title: str, unit: str, lines: dict[str, list[float]]) -> None:
        panels.append((title, unit, lines))

    add(
        "Bytes out per live call (rate)",
        "B/s",
        series.sum_by("switchboard_call_audio_out_bytes_total", ("call_sid",), rate=True),
    )
    add(
        "Active calls per edge / worker",
        "calls",
        {
            **{
                f"edge {k}": v
                for k, v in series.sum_by("switchboard_edge_active_calls", ("instance",)).items()
            },
            **{
                f"worker {k}": v
                for k, v in series.sum_by("switchboard_worker_active_calls", ("instance",)).items()
            },
        },
    )
    add(
        "Audio byte rates",
        "B/s",
        {
            label: next(iter(series.sum_by(name, rate=True).values()), [])
            for label, name in (
                ("edge in", "switchboard_edge_audio_in_bytes_total"),
                ("worker in", "switchboard_worker_audio_in_bytes_total"),
                ("worker out", "switchboard_worker_audio_out_bytes_total"),
                ("edge out", "switchboard_edge_audio_out_bytes_total"),
            )
        },
    )
    relay: dict[str, list[float]] = {}
    for q in (0.5, 0.95, 0.99):
        for hop, values in series.quantile(
            q, "switchboard_relay_latency_seconds", ("hop",)
        ).items():
            relay[f"p{round(q * 100)} {hop}"] = [v * 1000 for v in values]
    add("Relay latency per hop", "ms", relay)

    def quantiles(histogram: str, scale: float = 1.0) -> dict[str, list[float]]:
        lines = {}
        for q in (0.5, 0.95):
            (values,) = series.quantile(q, histogram).values() or ([math.nan] * len(t),)
            lines[f"p{round(q * 100)}"] = [v * scale for v in values]
        return lines

    add(
        "Audio queued at Twilio (mark round-trip)",
        "s",
        quantiles("switchboard_edge_mark_round_trip_seconds"),
    )
    add(
        "Speech start → clear",
        "ms",
        quantiles("switchboard_worker_speech_to_clear_seconds", 1000),
    )
    add(
        "Webhook → first model audio",
        "s",
        quantiles("switchboard_edge_webhook_to_first_audio_seconds"),
    )
    add("Dispatch wait", "s", quantiles("switchboard_edge_dispatch_wait_seconds"))
    barge = series.sum_by("switchboard_worker_barge_ins_total", rate=True)
    add(
        "Barge-ins",
        "per minute",
        {"barge-ins": [v * 60 for v in next(iter(barge.values()), [])]},
    )
    add(
        "Unheard audio at barge-in (truncation)",
        "ms",
        quantiles("switchboard_worker_barge_in_unheard_ms"),
    )
    redis_lines = {
        f"errors/s {k}": v
        for k, v in series.sum_by(
            "switchboard_redis_errors_total", ("process", "op"), rate=True
        ).items()
    }
    up = {
        f"up {k}": v
        for name in ("switchboard_edge_redis_up", "switchboard_worker_redis_up")
        for k, v in series.sum_by(name, ("instance",)).items()
    }
    add("Redis errors (rate)", "errors/s", redis_lines)
    add(
        "Redis recoveries (total)",
        "count",
        series.sum_by("switchboard_redis_reconnects_total", ("process", "op")),
    )
    add("Redis health", "up", up)
    add(
        "Realtime errors by code (total)",
        "count",
        series.sum_by("switchboard_worker_realtime_errors_total", ("code",)),
    )

    cols = 3
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(18, 3.2 * rows), squeeze=False)
    fig.patch.set_facecolor("#111217")
    for ax, (title, unit, lines) in zip(axes.flat, panels, strict=False):
        ax.set_facecolor("#181b1f")
        for spine in ax.spines.values():
            spine.set_color("#444")
        ax.tick_params(colors="#ccc", labelsize=7)
        ax.set_title(title, color="#eee", fontsize=9, loc="left")
        ax.set_ylabel(unit, color="#aaa", fontsize=7)
        ax.grid(color="#2a2d33", linewidth=0.5)
        many = len(lines) > 6
        for label, values in sorted(lines.items()):
            style = "--" if label.startswith("edge") else "-"  # edge over worker lines
            ax.plot(t[: len(values)], values, style, linewidth=1.0, label=None if many else label)
        if lines and not many:
            ax.legend(fontsize=6, facecolor="#181b1f", labelcolor="#ccc", edgecolor="#444")
        if many:
            ax.text(
                0.99,
                0.95,
                f"{len(lines)} calls",
                transform=ax.transAxes,
                ha="right",
                va="top",
                color="#aaa",
                fontsize=7,
            )
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("seconds into the run", color="#aaa", fontsize=7)
    fig.suptitle(
        f"Switchboard dashboard panels, from a {t[-1]:.0f} s run (windows of {WINDOW_S:.0f} s)",
        color="#eee",
    )
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90, facecolor=fig.get_facecolor())
    print(f"wrote {out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    parser.add_argument("--waves", type=int, default=4)
    parser.add_argument("--calls", type=int, default=4, help="concurrent calls per wave")
    parser.add_argument("--log-dir", type=Path, help="keep the processes' logs here")
    args = parser.parse_args()
    redis = start_redis_server()
    with tempfile.TemporaryDirectory() as tmp:
        log_dir = args.log_dir or Path(tmp)
        stack = Stack(StackConfig(redis_url=redis.url, log_dir=log_dir, workers=2))
        stack.start()

        def bounce() -> None:
            # Redis restarts empty: every process sees errors, then recovers.
            nonlocal redis
            port = redis.port
            redis.close()
            time.sleep(3.0)
            redis = start_redis_server(port)

        targets = {"edge-1": stack.edge_admin_urls[0]}  # /metrics is on the admin port
        for n, worker in enumerate(stack.workers, 1):
            targets[f"worker-{n}"] = f"http://127.0.0.1:{worker.port}"
        try:
            with Scraper(targets) as scraper:
                time.sleep(2.0)
                reports = asyncio.run(run_calls(stack, args.waves, args.calls, bounce))
                time.sleep(3.0)
        finally:
            stack.stop()
            redis.close()
    problems = [p for r in reports for p in r.problems()]
    for r in reports:
        print(r.call_sid, len(r.received_audio), r.clears, r.closed_by, r.said, r.problems()[:2])
    print(f"{len(reports)} calls, {len(problems)} problems, {len(scraper.scrapes)} scrapes")
    plot(Series(scraper.scrapes), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
