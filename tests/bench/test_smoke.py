"""A short whole-bench run of the split stack under both loads: correctness only (never
speed), and well-formed report files. (The lean relay's and the peer's own runs are in
test_baseline, in-process, to keep the suite fast.)"""

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
    runs = {run["load"]: run for run in document["runs"]}
    assert set(runs) == {"echo", "conversation"}
    for run in runs.values():
        assert run["config"] == "split"
        assert run["failed_calls"] == 0, run["errors"]
        assert run["frames_lost"] == 0 and run["frames_not_exact"] == 0
        assert run["sent_in_window"] > 0
        roles = {p["role"] for p in run["processes"]}
        assert roles >= {"edge", "worker", "redis", "simulator", "loadgen"}
    assert runs["echo"]["latency"]["count"] == runs["echo"]["sent_in_window"]
    talk = runs["conversation"]["conversation"]
    assert talk["probes_missing"] == 0 and talk["up"]["count"] == talk["up_sent"] > 0
    for png in tmp_path.glob("bench-*.png"):  # written when matplotlib is installed
        assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="needs redis-cli")
def test_bench_split_cluster_smoke_run(tmp_path: Path) -> None:
    code = main(
        [
            "--configs", "split-cluster",
            "--loads", "echo",
            "--calls", "3",
            "--duration", "1",
            "--warmup", "0.5",
            "--out", str(tmp_path),
            "--log-level", "WARNING",
        ]
    )  # fmt: skip
    assert code == 0
    [report] = tmp_path.glob("bench-*.json")
    [run] = json.loads(report.read_text())["runs"]
    assert run["config"] == "split-cluster" and run["workers"] == 1
    assert run["failed_calls"] == 0, run["errors"]
    assert run["frames_lost"] == 0 and run["frames_not_exact"] == 0
    assert run["sent_in_window"] > 0
    nodes = [p for p in run["processes"] if p["role"] == "redis"]
    assert len(nodes) == 6 and all(p["cpu_s"] is not None for p in nodes)
    balance = run["cluster"]
    assert len(balance["primaries"]) == 3
    assert all(len(p["replicas"]) == 1 for p in balance["primaries"])
    # Three calls' keys, counted while the calls were live, on the cluster's primaries.
    assert sum(p["keys"] for p in balance["primaries"]) >= 3 * 3
    assert {p["pid"] for p in balance["primaries"]} < {p["pid"] for p in nodes}
