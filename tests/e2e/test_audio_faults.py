"""The "vacuum cleaner" failures, made on purpose by the realtime simulator's fault modes,
are caught and named: the worker refuses a session that is not μ-law both ways, and the edge
recognises audio that is not μ-law speech in the first second it sends."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.call_sim import place_call
from tests.support.calls import CALLER_AUDIO, short_reply
from tests.support.stack import StackFactory, call_config, call_record, metric_value, scrape

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


@pytest.mark.parametrize("fault", ["pcm16", "ignore-session-update"])
async def test_a_session_that_is_not_mulaw_ends_the_call_naming_the_format(
    make_stack: StackFactory, fault: str
) -> None:
    stack = make_stack(workers=1, sim_mode="conversation", sim_args=["--fault", fault])
    report = await place_call(call_config(stack, CALLER_AUDIO, hold_s=2.0))

    assert report.received_audio == b"", "not one byte of the wrong format reached the caller"
    worker_log = stack.workers[0].log()
    assert "confirmed input 'audio/pcm'" in worker_log
    assert "Twilio needs 'audio/pcmu' both ways" in worker_log
    record = call_record(stack, report.call_sid)
    assert "audio/pcm" in record["error"]
    worker_metrics = scrape(f"http://127.0.0.1:{stack.workers[0].port}")
    errors = "switchboard_worker_realtime_errors_total"
    assert metric_value(worker_metrics, errors, code="format_mismatch") == 1


async def test_double_base64_audio_is_named_by_the_edge(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    stack = make_stack(
        workers=1,
        sim_mode="conversation",
        sim_args=["--fault", "double-base64", *short_reply(tmp_path)],
    )
    report = await place_call(call_config(stack, CALLER_AUDIO, hold_s=3.0))

    # The caller simulator, playing Twilio, hears the fault too.
    assert any(v.startswith("double_base64") for v in report.protocol_violations)
    edge_log = stack.edges[0].log()
    errors = [
        line for line in edge_log.splitlines() if "the audio sent to the caller is wrong" in line
    ]
    assert len(errors) == 1, "one ERROR line per call"
    assert f"call={report.call_sid}" in errors[0] and "base64_text" in errors[0]
    metrics = scrape(stack.edge_admin_urls[0])
    assert metric_value(metrics, "switchboard_edge_format_mismatch_total", kind="base64_text") == 1
    record = call_record(stack, report.call_sid)
    assert record["audio_check"] == "base64_text"


async def test_correct_speech_raises_no_alarm(make_stack: StackFactory, tmp_path: Path) -> None:
    stack = make_stack(workers=1, sim_mode="conversation", sim_args=short_reply(tmp_path))
    report = await place_call(call_config(stack, CALLER_AUDIO, hold_s=3.0))
    assert report.problems() == [] and report.received_audio
    metrics = scrape(stack.edge_admin_urls[0])
    assert "switchboard_edge_format_mismatch_total{" not in metrics
    assert "the audio sent to the caller" not in stack.edges[0].log()
