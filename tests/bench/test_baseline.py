"""The direct baseline relays bit-exact: a tiny run against the in-process simulator."""

from __future__ import annotations

import pytest

from services.bench.baseline import serve_baseline
from services.bench.loadgen import LoadConfig, run_load
from services.devstack import DEMO_AUTH_TOKEN, PUBLIC_URL
from services.realtime_sim import BehaviourConfig, Mode, SimulatorConfig, run_simulator

pytestmark = pytest.mark.anyio


async def test_baseline_relays_every_frame_bit_exact() -> None:
    sim_config = SimulatorConfig(behaviour=BehaviourConfig(mode=Mode.ECHO))
    async with run_simulator(sim_config) as sim, serve_baseline(sim.url) as url:
        result = await run_load(
            LoadConfig(
                edge_url=url,
                public_url=PUBLIC_URL,
                auth_token=DEMO_AUTH_TOKEN,
                calls=2,
                duration_s=1.0,
                warmup_s=0.2,
                drain_s=2.0,
            )
        )
    assert result.failed_calls == []
    assert result.frames_sent >= 2 * 50
    assert result.frames_lost == 0
    assert result.frames_corrupt == 0
    assert result.sent_in_window > 0 and result.lost_in_window == 0
    assert len(result.latencies_ms) == result.sent_in_window
    assert all(c.marks_received == c.frames_echoed for c in result.calls)
    assert all(c.first_audio_s > 0 for c in result.calls)
