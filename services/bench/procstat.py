"""CPU time and resident memory of a process, from the kernel's own accounting (Linux /proc).

Read directly rather than through a library: two small files per process, the same numbers
``psutil`` would report, and no extra dependency for the suite.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ProcSample", "machine_cpu", "sample"]

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True, slots=True)
class ProcSample:
    cpu_s: float  # user + system, the process's own threads (not its children)
    rss_bytes: int


def sample(pid: int) -> ProcSample | None:
    """The process's CPU seconds and RSS now; None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        statm = Path(f"/proc/{pid}/statm").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return ProcSample((utime + stime) / _TICKS, int(statm.split()[1]) * _PAGE)


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores together: the
    share not spent by the bench's own processes shows whether someone else shared the box."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already inside user and nice
    return (total - idle) / _TICKS, total / _TICKS
