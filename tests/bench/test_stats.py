"""Percentiles and per-call arithmetic."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from services.bench.stats import cpu_per_call_minute, per_call, percentile, summarize


@pytest.mark.parametrize("q", [0, 1, 50, 95, 99, 99.9, 100])
def test_percentile_matches_numpy(q: float) -> None:
    rng = random.Random(q)
    values = sorted(rng.expovariate(0.2) for _ in range(1001))
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_edges() -> None:
    assert math.isnan(percentile([], 50))
    assert percentile([4.0], 99) == 4.0
    assert percentile([1.0, 2.0], 50) == 1.5
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarize() -> None:
    summary = summarize([float(v) for v in range(100, 0, -1)])  # any order
    assert summary.count == 100
    assert summary.p50 == pytest.approx(50.5)
    assert summary.p99 == pytest.approx(99.01)
    assert summary.max == 100
    assert summary.mean == pytest.approx(50.5)
    empty = summarize([])
    assert empty.count == 0 and math.isnan(empty.p99)


def test_cpu_per_call_minute() -> None:
    # 12 CPU seconds for 100 calls over 30 s is 50 call-minutes: 0.24 s per call-minute.
    assert cpu_per_call_minute(12.0, 100, 30.0) == pytest.approx(0.24)
    assert math.isnan(cpu_per_call_minute(1.0, 0, 30.0))
    assert per_call(1024.0, 4) == 256.0
    assert math.isnan(per_call(1.0, 0))
