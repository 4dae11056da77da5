"""``--profile DIR``: cProfile the bridge's processes over the measured window.

Each bridge process (edge, worker, relay, peer) starts with ``profile_hook/`` first on its
PYTHONPATH and BENCH_PROFILE naming its statistics file; the runner signals SIGUSR1 at the
window's start and SIGUSR2 at its end. cProfile slows a process down (every Python call is
counted), so the figures of a profiled run are not the bench's figures: read its tables for
where the time goes, not for how much there is.
"""

from __future__ import annotations

import io
import os
import pstats
import signal
from collections.abc import Iterable
from pathlib import Path

__all__ = ["HOOK_DIR", "profile_env", "signal_all", "top"]

HOOK_DIR = Path(__file__).parent / "profile_hook"


def profile_env(stats_path: Path) -> dict[str, str]:
    """The environment that makes a spawned process profile itself on the signals."""
    return {"PYTHONPATH": str(HOOK_DIR), "BENCH_PROFILE": str(stats_path)}


def signal_all(pids: Iterable[int], start: bool) -> None:
    """SIGUSR1 (start) or SIGUSR2 (stop and write) to each process still there."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGUSR1 if start else signal.SIGUSR2)
        except ProcessLookupError:
            pass


def top(stats_path: Path, limit: int = 25) -> str:
    """The profile's heaviest functions by own time, then by cumulative time."""
    if not stats_path.exists():
        return f"(no profile written to {stats_path})"
    out = io.StringIO()
    stats = pstats.Stats(str(stats_path), stream=out)
    stats.strip_dirs().sort_stats(pstats.SortKey.TIME).print_stats(limit)
    stats.sort_stats(pstats.SortKey.CUMULATIVE).print_stats(limit)
    return out.getvalue()
