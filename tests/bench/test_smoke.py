"""A short whole-bench run of the split stack: correctness only (never speed), and well-formed
report files. (The baseline relay's own run is in test_baseline, in-process, to keep the suite
fast.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from services.bench.__main__ import main

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]


def test_bench_smoke_run(tmp_path: Path) -> None:
    code = main(
        [
            "--configs", "split",
            "--calls", "3",
            "--duration", "1",
            "--warmup", "0.5",
            "--out", str(tmp_path),
            "--log-level", "WARNING",
        ]
    )  # fmt: skip
    assert code == 0
    [report] = tmp_path.glob("bench-*.json")
    document = json.loads(report.read_text())
    runs = {run["config"]: run for run in document["runs"]}
    assert set(runs) == {"split"}
    for run in runs.values():
        assert run["failed_calls"] == 0, run["errors"]
        assert run["frames_lost"] == 0 and run["frames_not_exact"] == 0
        assert run["sent_in_window"] > 0 and run["latency"]["count"] == run["sent_in_window"]
        assert {p["role"] for p in run["processes"]} >= {"simulator", "loadgen"}
    roles = {p["role"] for p in runs["split"]["processes"]}
    assert roles >= {"edge", "worker", "redis"}
    for png in tmp_path.glob("bench-*.png"):  # written when matplotlib is installed
        assert png.read_bytes()[:4] == b"\x89PNG"
