"""Where a split run's Redis spends its time, by command: ``INFO commandstats`` read at the
measured window's start and end on every node, the difference summed over the nodes.

Redis counts the time a command spends executing, not the socket reads and writes around it,
so the shares say which commands cost the most, not the whole of Redis's CPU. Nothing is
reset: a Redis named by ``--redis-url`` keeps its own statistics.

Pure functions over ``INFO commandstats`` replies (as redis-py parses them); the runner reads
them (``runner.run_config``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["CommandTime", "commands_line", "spent", "totals"]

PREFIX = "cmdstat_"


@dataclass(frozen=True, slots=True)
class CommandTime:
    """One command's calls and execution time in the window, every node together."""

    name: str
    calls: int
    usec: int

    @property
    def usec_per_call(self) -> float:
        return self.usec / self.calls if self.calls else 0.0


def totals(replies: Sequence[Mapping[str, Any]]) -> dict[str, tuple[int, int]]:
    """Calls and microseconds per command, summed over the nodes' ``INFO commandstats``."""
    summed: dict[str, tuple[int, int]] = {}
    for reply in replies:
        for key, stats in reply.items():
            if not key.startswith(PREFIX):
                continue
            name = key.removeprefix(PREFIX)
            calls, usec = summed.get(name, (0, 0))
            summed[name] = (calls + int(stats["calls"]), usec + int(stats["usec"]))
    return summed


def spent(
    before: Mapping[str, tuple[int, int]], after: Mapping[str, tuple[int, int]]
) -> list[CommandTime]:
    """What each command cost between the two readings, the costliest first; commands not
    called in between are left out."""
    commands = []
    for name, (calls, usec) in after.items():
        calls0, usec0 = before.get(name, (0, 0))
        if calls > calls0:
            commands.append(CommandTime(name, calls - calls0, usec - usec0))
    return sorted(commands, key=lambda c: (-c.usec, c.name))


def commands_line(commands: Sequence[CommandTime], window_s: float, top: int = 5) -> str:
    """The costliest ``top`` commands: share of Redis's command time, µs per call, calls/s."""
    total = sum(c.usec for c in commands)
    if total == 0 or window_s <= 0:
        return "no commands counted"
    parts = [
        f"{c.name} {100 * c.usec / total:.0f}% ({c.usec_per_call:.1f} µs × "
        f"{c.calls / window_s:.0f}/s)"
        for c in commands[:top]
    ]
    return f"{total / window_s / 1000:.0f} ms/s executing: " + ", ".join(parts)
