"""The command line, the Twilio media text, the report files and the targets' verdicts."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from services.bench.__main__ import main, parser, selected_configs
from services.bench.loadgen import _mark_echo, media_text
from services.bench.pattern import encode_frame
from services.bench.report import table, to_json
from services.bench.runner import ProcessFigures, RunResult
from services.bench.stats import summarize
from services.bench.targets import judge
from services.call_sim import messages


def test_help_runs_as_a_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "services.bench", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    for option in ("--calls", "--duration", "--loads", "--configs", "--step", "--quick"):
        assert option in done.stdout
    assert "--cluster" in done.stdout and "split-cluster" in done.stdout


def test_lists_are_parsed_and_nonsense_refused(capsys: pytest.CaptureFixture[str]) -> None:
    args = parser().parse_args(["--calls", "10,50,100", "--loads", "conversation"])
    assert args.calls == [10, 50, 100] and args.loads == ["conversation"]
    assert args.configs == ["split", "peer", "baseline"]
    assert parser().parse_args(["--delta-ms", "40,500"]).delta_ms == (40, 500)
    with pytest.raises(SystemExit):
        parser().parse_args(["--calls", "ten"])
    with pytest.raises(SystemExit):
        parser().parse_args(["--delta-ms", "500,40"])
    for bad in (["--configs", "neither"], ["--loads", "speech"]):
        with pytest.raises(SystemExit) as exit_info:
            main(bad)
        assert exit_info.value.code == 2
    assert main(["--barge-share", "2"]) == 2


@pytest.mark.parametrize(
    ("argv", "configs"),
    [
        ([], ["split", "peer", "baseline"]),
        (["--cluster"], ["split", "split-cluster", "peer", "baseline"]),
        (["--configs", "split-cluster"], ["split-cluster"]),
        (["--configs", "split-cluster", "--cluster"], ["split-cluster"]),
        (["--configs", "split,split-cluster", "--cluster"], ["split", "split-cluster"]),
        (["--configs", "peer,split", "--cluster"], ["peer", "split", "split-cluster"]),
        (["--configs", "baseline,peer", "--cluster"], ["baseline", "peer", "split-cluster"]),
        (["--configs", "peer,peer"], ["peer"]),
    ],
)
def test_cluster_adds_split_cluster_to_the_configs(argv: list[str], configs: list[str]) -> None:
    args = parser().parse_args(argv)
    assert args.cluster == ("--cluster" in argv)
    assert selected_configs(args.configs, args.cluster) == configs


def test_media_text_is_the_call_simulators_message() -> None:
    frame = encode_frame(1, 2)
    sid = "MZ" + "0" * 32
    assert media_text(3, sid, 2, 20, frame) == messages.media_message(3, sid, 2, 20, frame)
    assert json.loads(_mark_echo(4, sid, "it:1")) == json.loads(messages.mark_echo(4, sid, "it:1"))


def _result(config: str, cpu: float = 15.0, p99s: tuple[float, ...] = (1.0, 2.0, 3.0)) -> RunResult:
    role = {"split": "edge", "peer": "peer", "baseline": "relay"}[config]
    return RunResult(
        config=config,
        calls=2,
        workers=1,
        window_s=1.0,
        latency=summarize(list(p99s)),
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
            ProcessFigures(f"{role}-1", role, 1, 0.5, cpu, 10, 20, 5.0),
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


def test_capacity_verdict_needs_split_and_peer_searched() -> None:
    def verdict(found: dict[str, int | None]) -> str:
        lines = judge([], {"echo": found})
        return next(line for line in lines if "capacity" in line)

    assert "no verdict" in verdict({"split": 60})  # a split-only search compares with nothing
    assert verdict({"split": 50, "peer": 80}).endswith("NOT MET")
    assert verdict({"split": 80, "peer": 80, "baseline": 100}).endswith(": MET")
    assert verdict({"split": None, "peer": 10}).endswith("NOT MET")


def test_targets_compare_the_split_with_the_peer_and_report_the_relay() -> None:
    results = [
        _result("split", cpu=2.0, p99s=(5.0,)),
        _result("peer", cpu=1.0, p99s=(1.0,)),
        _result("baseline", cpu=0.5, p99s=(1.0,)),
    ]
    lines = judge(results, {})
    assert lines[0] == "echo load:"
    cpu = next(line for line in lines if "CPU s/call-min" in line)
    assert "×2.00" in cpu and "(not a target C)" in cpu and cpu.endswith("NOT MET")
    p99 = next(line for line in lines if "p99 round trip" in line)
    assert p99.endswith("NOT MET")  # 5 ms against 1 + 3
    assert any("lean relay: split ×4.00, peer ×2.00" in line for line in lines)
    results[0] = _result("split", cpu=1.0, p99s=(3.9,))
    lines = judge(results, {})
    assert next(line for line in lines if "CPU s/call-min" in line).endswith(": MET")
    assert next(line for line in lines if "p99 round trip" in line).endswith(": MET")
