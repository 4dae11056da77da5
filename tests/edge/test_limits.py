from __future__ import annotations

from services.edge.limits import MediaPacer

FRAME = 160  # 20 ms


def test_real_time_media_is_always_admitted() -> None:
    pacer = MediaPacer(burst_ms=100)
    assert all(pacer.admit(FRAME, i * 0.020) for i in range(10_000))


def test_a_flood_is_cut_at_the_burst_and_real_time_resumes() -> None:
    pacer = MediaPacer(burst_ms=1000)
    admitted = sum(pacer.admit(FRAME, 0.0) for _ in range(500))  # 10 s of audio at once
    assert admitted == 50  # exactly the 1 s burst
    assert not pacer.admit(FRAME, 0.010)
    assert pacer.admit(FRAME, 0.020)  # 20 ms later, one more frame fits


def test_jitter_within_the_burst_loses_nothing() -> None:
    pacer = MediaPacer(burst_ms=500)
    # Frames arrive in clumps of 10 every 200 ms (network jitter): on average real time.
    times = [clump * 0.2 for clump in range(100) for _ in range(10)]
    assert all(pacer.admit(FRAME, t) for t in times)
