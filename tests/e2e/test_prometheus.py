"""A real Prometheus scrapes a running edge and worker during a call: the per-call bytes-out
series it stores equals what the caller received, and every metric the dashboard and the alert
rules use is exported by the running processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.call_sim import place_call
from tests.support.calls import CALLER_AUDIO
from tests.support.ports import allocator
from tests.support.stack import StackFactory, call_config, scrape
from tests.support.waiting import eventually, eventually_sync

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = shutil.which("prometheus")


def query(base: str, promql: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def dashboard_and_alert_metrics() -> set[str]:
    texts = [
        str(rule["expr"])
        for group in yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())["groups"]
        for rule in group["rules"]
    ]
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/switchboard.json").read_text())
    texts += re.findall(r'"expr":\s*"((?:[^"\\]|\\.)*)"', json.dumps(dashboard))
    names = set()
    for text in texts:
        names.update(re.findall(r"\b(switchboard_[a-zA-Z0-9_]+)", text))
    return names


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def start_prometheus(folder: Path, port: int) -> subprocess.Popen[bytes]:
    assert PROMETHEUS is not None
    with (folder / "prometheus.log").open("wb") as log:
        return subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )


SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count")}


def exported_sample_names(exposition: str) -> set[str]:
    """Sample names of every metric family a process declares (labelled families export no
    sample until a label set is used, but are exported all the same)."""
    names = set()
    for family, kind in re.findall(r"^# TYPE (switchboard_\w+) (\w+)$", exposition, re.M):
        names.add(family)  # counters are declared with their _total already
        names.update(family + suffix for suffix in SUFFIXES.get(kind, ()))
    return names


@pytest.mark.skipif(PROMETHEUS is None, reason="needs Debian's prometheus package (.ci/run)")
async def test_prometheus_stores_per_call_bytes_equal_to_what_the_caller_received(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    stack = make_stack(workers=1, sim_mode="conversation")
    edge_target = stack.edge_admin_urls[0].removeprefix("http://")
    worker_target = f"127.0.0.1:{stack.workers[0].port}"
    config = {
        "global": {"scrape_interval": "500ms", "scrape_timeout": "400ms"},
        "scrape_configs": [
            {"job_name": "edge", "static_configs": [{"targets": [edge_target]}]},
            {"job_name": "worker", "static_configs": [{"targets": [worker_target]}]},
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = allocator()
    base = f"http://127.0.0.1:{port}"
    prometheus = start_prometheus(tmp_path, port)
    try:
        eventually_sync(lambda: answers(f"{base}/-/ready"), 20, "prometheus ready")
        report = await place_call(call_config(stack, CALLER_AUDIO, hold_s=10.0))
        assert report.problems() == []
        received = len(report.received_audio)
        assert received > 0

        # Exported by the running processes: every name the dashboard and alerts use.
        exported = scrape(stack.edge_admin_urls[0]) + scrape(f"http://{worker_target}")
        exported_names = exported_sample_names(exported)
        assert dashboard_and_alert_metrics() - exported_names == set()

        series = f'switchboard_call_audio_out_bytes_total{{call_sid="{report.call_sid}"}}'
        promql = f"max_over_time({series}[5m])"
        stored: list[float | None] = [None]

        async def scraped_in_full() -> bool:
            result = await asyncio.to_thread(query, base, promql)
            stored[0] = float(result[0]["value"][1]) if result else None
            return stored[0] == received

        with contextlib.suppress(AssertionError):
            await eventually(scraped_in_full, 10, "the series at its final value")
        assert stored[0] == received
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=10)
