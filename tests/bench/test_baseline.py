"""The lean relay and the peer relay bit-exact: tiny runs against the in-process simulator,
the echo load for the relay, a short conversation with barge-ins for the peer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.bench.baseline import serve_baseline
from services.bench.loadgen import CONVERSATION, LoadConfig, run_load
from services.bench.peer import VOICE_PATH, serve_peer
from services.bench.scoring import score
from services.bench.turns import TurnShape
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


# Short turns, every reply barged in on: a reply at 4× real time takes 2 s to stream.
QUICK_TURNS = TurnShape(
    first_pause_s=(0.0, 0.2),
    speech_s=(0.4, 0.5),
    pause_s=(0.1, 0.2),
    barge_share=1.0,
    barge_after_s=(0.4, 0.6),
    barge_speech_s=(0.4, 0.5),
)


async def test_the_peer_converses_bit_exact_and_clears_on_barge_in(tmp_path: Path) -> None:
    probe = tmp_path / "probe.jsonl"
    sim_config = SimulatorConfig(
        behaviour=BehaviourConfig(mode=Mode.CONVERSATION), probe_path=probe
    )
    async with run_simulator(sim_config) as sim, serve_peer(sim.url) as url:
        result = await run_load(
            LoadConfig(
                edge_url=url,
                public_url=PUBLIC_URL,
                auth_token=DEMO_AUTH_TOKEN,
                calls=2,
                duration_s=3.0,
                warmup_s=0.2,
                drain_s=1.0,
                load=CONVERSATION,
                voice_path=VOICE_PATH,
                turns=QUICK_TURNS,
            )
        )
    assert result.failed_calls == []
    lines = [json.loads(line) for line in probe.read_text().splitlines()]
    figures = score(result.callers, lines, result.window_ns)
    assert figures.ok, figures
    assert figures.up_sent >= 2 * 100 and figures.up.count == figures.up_sent
    assert figures.down_deltas > 0 and figures.down.count > 0
    assert figures.barge_ins > 0 and figures.barges_missed == 0
    assert figures.clear_ms.count == figures.barge_ins
    assert figures.truncate_error_ms.count > 0  # the peer truncates what it clears
