"""A short whole-bench run of the split stack under both loads: correctness only (never
speed), and well-formed report files. (The lean relay's and the peer's own runs are in
test_baseline, in-process, to keep the suite fast.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from services.bench.__main__ import main

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]


def short_bench(out: Path, *args: str) -> list[dict[str, Any]]:
    """The runs of a 1 s bench of 3 calls with ``args``, from its JSON report."""
    common = ["--calls", "3", "--duration", "1", "--warmup", "0.5", "--log-level", "WARNING"]
    assert main([*args, *common, "--out", str(out)]) == 0
    [report] = out.glob("bench-*.json")
    runs: list[dict[str, Any]] = json.loads(report.read_text())["runs"]
    return runs


def test_bench_smoke_run(tmp_path: Path) -> None:
    runs = {run["load"]: run for run in short_bench(tmp_path, "--configs", "split")}
    assert set(runs) == {"echo", "conversation"}
    for run in runs.values():
        assert run["config"] == "split"
        assert run["failed_calls"] == 0, run["errors"]
        assert run["frames_lost"] == 0 and run["frames_not_exact"] == 0
        assert run["sent_in_window"] > 0
        roles = {p["role"] for p in run["processes"]}
        assert roles >= {"edge", "worker", "redis", "simulator", "loadgen"}
        # The window's Redis commands: the frame path's reads and writes among them.
        commands = {c["name"]: c for c in run["redis_commands"]}
        assert commands["xread"]["calls"] > 0 and commands["xread"]["usec"] > 0
        assert "xadd" in commands or "evalsha" in commands
    assert runs["echo"]["latency"]["count"] == runs["echo"]["sent_in_window"]
    talk = runs["conversation"]["conversation"]
    assert talk["probes_missing"] == 0 and talk["up"]["count"] == talk["up_sent"] > 0
    for png in tmp_path.glob("bench-*.png"):  # written when matplotlib is installed
        assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="needs redis-cli")
def test_bench_split_cluster_smoke_run(tmp_path: Path) -> None:
    [run] = short_bench(tmp_path, "--configs", "split-cluster", "--loads", "echo")
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
