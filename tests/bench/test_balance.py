"""split-cluster's balance: the run's keys and CPU per primary, in the JSON and the tables."""

from __future__ import annotations

import json
import math

import pytest

from services.bench.balance import NodeRole, balance, balance_line, spread
from services.bench.report import table, to_json
from services.bench.runner import ProcessFigures, RunResult
from services.bench.stats import summarize

# Three shards, listed as the set-up lists them: each primary, then its replica.
NODES = [
    NodeRole(7001, 101),
    NodeRole(7004, 104, primary_port=7001),
    NodeRole(7002, 102),
    NodeRole(7005, 105, primary_port=7002),
    NodeRole(7003, 103),
    NodeRole(7006, 106, primary_port=7003),
]
CPU = {101: 0.6, 102: 0.3, 103: 0.3, 104: 0.2, 105: 0.1, 106: 0.15}


def test_spread_is_the_busiest_over_the_mean() -> None:
    assert spread([10, 10, 10]) == 1.0
    assert spread([30, 0, 0]) == 3.0  # one primary holds everything
    assert spread([0.6, 0.3, 0.3]) == pytest.approx(1.5)
    for unknown in ([], [1, None, 2], [1.0, math.nan], [0, 0, 0]):
        assert math.isnan(spread(unknown))


def test_nodes_are_named_by_role_and_port() -> None:
    assert [n.name for n in NODES[:2]] == ["redis-p-7001", "redis-r-7004"]


def test_balance_puts_each_replica_under_its_primary() -> None:
    b = balance(NODES, "sbdemo1:*", {7001: 40, 7002: 50, 7003: 30}, CPU)
    assert [(p.port, p.pid, p.keys, p.cpu_s) for p in b.primaries] == [
        (7001, 101, 40, 0.6),
        (7002, 102, 50, 0.3),
        (7003, 103, 30, 0.3),
    ]
    assert [[r.port for r in p.replicas] for p in b.primaries] == [[7004], [7005], [7006]]
    assert [p.replicas_cpu_s for p in b.primaries] == [0.2, 0.1, 0.15]
    assert b.keys_spread == pytest.approx(1.25) and b.cpu_spread == pytest.approx(1.5)
    assert b.key_pattern == "sbdemo1:*"


def test_keys_not_counted_leave_the_spread_unknown() -> None:
    b = balance(NODES, "p:*", None, {})
    assert all(p.keys is None and math.isnan(p.cpu_s) for p in b.primaries)
    assert math.isnan(b.keys_spread) and math.isnan(b.cpu_spread)
    line = balance_line(b)
    assert "keys — / — / —" in line and "(max ×— the mean)" in line
    # A primary that the count did not see (a failover since the start) is unknown too.
    assert math.isnan(balance(NODES, "p:*", {7001: 4, 7002: 4}, CPU).keys_spread)


def test_the_balance_line_reads_primary_by_primary() -> None:
    line = balance_line(balance(NODES, "p:*", {7001: 40, 7002: 50, 7003: 30}, CPU))
    assert line == (
        "primaries 7001 / 7002 / 7003: keys 40 / 50 / 30 (max ×1.25 the mean), "
        "CPU s 0.60 / 0.30 / 0.30 (×1.50); their replicas' CPU s 0.20 / 0.10 / 0.15"
    )


def _run(config: str, processes: list[ProcessFigures]) -> RunResult:
    return RunResult(
        config=config,
        calls=10,
        workers=1,
        window_s=6.0,
        latency=summarize([1.0, 2.0]),
        first_audio_ms=summarize([100.0]),
        webhook_ms=summarize([]),
        frames_sent=600,
        frames_lost=0,
        frames_not_exact=0,
        frames_duplicate=0,
        sent_in_window=600,
        lost_in_window=0,
        failed_calls=0,
        errors=[],
        processes=processes,
        redis_memory_per_call=2048.0,
    )


def test_report_shows_split_cluster_beside_split_with_its_balance() -> None:
    bridge = [
        ProcessFigures("edge-1", "edge", 1, 1.0, 0.5),
        ProcessFigures("worker-1", "worker", 2, 1.0, 0.25),
    ]
    split = _run("split", [*bridge, ProcessFigures("redis", "redis", 3, 0.2, 0.1)])
    nodes = [ProcessFigures(n.name, "redis", n.pid, CPU[n.pid], CPU[n.pid]) for n in NODES]
    clustered = _run("split-cluster", [*bridge, *nodes])
    clustered.cluster = balance(NODES, "p:*", {7001: 40, 7002: 50, 7003: 30}, CPU)
    text = table([split, clustered])
    lines = text.splitlines()
    # Every node's CPU, replicas included, is the bridge's Redis: 0.6+0.3+0.3+0.2+0.1+0.15.
    assert clustered.cpu_of("redis") == pytest.approx(1.65)
    assert clustered.bridge_cpu_per_call_min == pytest.approx(2.4)
    echo_rows = [line for line in lines if line.startswith(("split ", "split-cluster "))]
    assert len(echo_rows) == 2
    assert "0.50 + 0.25 + 0.10" in echo_rows[0] and "0.50 + 0.25 + 1.65" in echo_rows[1]
    # The columns stay aligned: the longer name does not push the row along.
    assert len({row.index("│") for row in echo_rows}) == 1
    assert "redis-r-7006" in text
    assert "Redis used_memory per live call (all its nodes together): 2.0 KiB" in text
    balance_rows = [line for line in lines if "primaries 7001 / 7002 / 7003" in line]
    assert len(balance_rows) == 1 and balance_rows[0].startswith("echo")
    assert "C=10" in balance_rows[0]
    assert "Redis Cluster balance" not in table([split])

    document = json.loads(to_json([split, clustered], "python -m services.bench", {}))
    assert document["runs"][0]["cluster"] is None
    record = document["runs"][1]["cluster"]
    assert record["key_pattern"] == "p:*" and record["keys_spread"] == pytest.approx(1.25)
    assert [p["keys"] for p in record["primaries"]] == [40, 50, 30]
    assert record["primaries"][0]["replicas"] == [{"port": 7004, "pid": 104, "cpu_s": 0.2}]
