"""Percentiles and per-call figures, pure functions over plain numbers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

__all__ = [
    "LatencySummary",
    "cpu_per_call_minute",
    "percentile",
    "per_call",
    "summarize",
]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) of ascending ``sorted_values``, interpolated linearly
    between the closest ranks (numpy's default); NaN for no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    n = len(sorted_values)
    if n == 0:
        return math.nan
    rank = (n - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, n - 1)
    fraction = rank - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Milliseconds. ``count`` samples; NaN figures when there are none."""

    count: int
    p50: float
    p95: float
    p99: float
    max: float
    mean: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def summarize(values_ms: Sequence[float]) -> LatencySummary:
    ordered = sorted(values_ms)
    if not ordered:
        return LatencySummary(0, math.nan, math.nan, math.nan, math.nan, math.nan)
    return LatencySummary(
        count=len(ordered),
        p50=percentile(ordered, 50),
        p95=percentile(ordered, 95),
        p99=percentile(ordered, 99),
        max=ordered[-1],
        mean=math.fsum(ordered) / len(ordered),
    )


def cpu_per_call_minute(cpu_seconds: float, calls: int, window_s: float) -> float:
    """CPU seconds spent per minute of one call: the operator's unit of cost."""
    if calls <= 0 or window_s <= 0:
        return math.nan
    return cpu_seconds / (calls * window_s / 60)


def per_call(total: float, calls: int) -> float:
    return total / calls if calls > 0 else math.nan
