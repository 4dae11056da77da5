"""The command line, the Twilio media text and the report files."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from services.bench.__main__ import _targets, main, parser
from services.bench.loadgen import _mark_echo, media_text
from services.bench.pattern import encode_frame
from services.bench.report import table, to_json
from services.bench.runner import ProcessFigures, RunResult
from services.bench.stats import summarize
from services.call_sim import messages


def test_help_runs_as_a_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "services.bench", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    for option in ("--calls", "--duration", "--workers", "--step", "--quick"):
        assert option in done.stdout


def test_calls_accepts_a_list_and_refuses_nonsense(capsys: pytest.CaptureFixture[str]) -> None:
    assert parser().parse_args(["--calls", "10,50,100"]).calls == [10, 50, 100]
    with pytest.raises(SystemExit):
        parser().parse_args(["--calls", "ten"])
    assert main(["--configs", "neither"]) == 2


def test_media_text_is_the_call_simulators_message() -> None:
    frame = encode_frame(1, 2)
    sid = "MZ" + "0" * 32
    assert media_text(3, sid, 2, 20, frame) == messages.media_message(3, sid, 2, 20, frame)
    assert json.loads(_mark_echo(4, sid, "it:1")) == json.loads(messages.mark_echo(4, sid, "it:1"))


def _result(config: str) -> RunResult:
    return RunResult(
        config=config,
        calls=2,
        workers=1,
        window_s=1.0,
        latency=summarize([1.0, 2.0, 3.0]),
        first_audio_ms=summarize([100.0]),
        webhook_ms=summarize([]),
        frames_sent=100,
        frames_lost=0,
        frames_not_exact=0,
        frames_duplicate=0,
        sent_in_window=100,
        lost_in_window=0,
        failed_calls=0,
        errors=[],
        processes=[
            ProcessFigures("edge-1", "edge", 1, 0.5, 15.0, 10, 20, 5.0),
            ProcessFigures("loadgen", "loadgen", 2),
        ],
    )


def test_report_json_is_strict_and_complete() -> None:
    results = [_result("split"), _result("baseline")]
    document = json.loads(to_json(results, "python -m services.bench", {"capacity": {}}))
    assert document["machine"]["cpus"] >= 1
    run = document["runs"][0]
    assert run["latency"]["p99"] == pytest.approx(2.98)
    assert run["webhook_ms"]["p99"] is None  # NaN is written as null
    assert run["bridge_cpu_per_call_min"] == 15.0 and run["ok"] is True
    assert not math.isnan(run["processes"][0]["cpu_s"])
    text = table(results)
    assert "split" in text and "edge-1" in text and "2.98" in text


def test_capacity_verdict_needs_both_designs_searched() -> None:
    def verdict(capacity: dict[str, int | None]) -> str:
        return next(line for line in _targets([], capacity) if line.startswith("capacity"))

    assert "no verdict" in verdict({"split": 60})  # a split-only search compares with nothing
    assert verdict({"split": 50, "baseline": 80}).endswith("NOT MET (aim: 400)")
    assert verdict({"split": 80, "baseline": 80}).endswith(": MET (aim: 400)")
    assert verdict({"split": None, "baseline": 10}).endswith("NOT MET (aim: 400)")
