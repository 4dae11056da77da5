"""The bench's Redis command profile: INFO commandstats, differenced over the window and
summed over nodes."""

from __future__ import annotations

from services.bench.redis_commands import CommandTime, commands_line, spent, totals


def stats(calls: int, usec: int) -> dict[str, float]:
    return {"calls": calls, "usec": usec, "usec_per_call": usec / calls, "rejected_calls": 0}


def test_nodes_are_summed_and_other_sections_ignored() -> None:
    node_a = {"cmdstat_xadd": stats(10, 30), "cmdstat_xread": stats(2, 200)}
    node_b = {"cmdstat_xadd": stats(5, 20), "errorstat_ERR": {"count": 1}}
    assert totals([node_a, node_b]) == {"xadd": (15, 50), "xread": (2, 200)}


def test_the_window_is_the_difference_costliest_first() -> None:
    before = {"xadd": (100, 300), "xread": (10, 1000), "ping": (3, 6)}
    after = {"xadd": (400, 1200), "xread": (20, 2400), "ping": (3, 6), "evalsha": (5, 250)}
    assert spent(before, after) == [
        CommandTime("xread", 10, 1400),
        CommandTime("xadd", 300, 900),
        CommandTime("evalsha", 5, 250),
    ]  # ping was not called in the window


def test_the_line_gives_shares_cost_per_call_and_rate() -> None:
    commands = [CommandTime("xread", 100, 7500), CommandTime("xadd", 500, 2500)]
    assert commands_line(commands, window_s=2.0, top=5) == (
        "5 ms/s executing: xread 75% (75.0 µs × 50/s), xadd 25% (5.0 µs × 250/s)"
    )
    assert commands_line([], window_s=2.0) == "no commands counted"
