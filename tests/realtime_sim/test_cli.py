"""``python -m services.realtime_sim`` as devstack and users run it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from websockets.sync.client import connect

from services.realtime_sim.__main__ import build_parser, config_from_args
from services.realtime_sim.behaviour import Mode

ROOT = Path(__file__).resolve().parents[2]


def test_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.realtime_sim", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0
    for flag in (
        "--port",
        "--mode",
        "--record",
        "--api-key",
        "--speed",
        "--reply-audio",
        "--log-level",
        "--drop-after-ms",
        "--drop-how",
        "--session-max-s",
        "--fail-responses",
        "--late-transcripts",
        "--cancel-delay-ms",
        "--allow-model",
        "--any-model",
        "--allow-transcription-model",
    ):
        assert flag in result.stdout


def test_flags_reach_the_config(tmp_path: Path) -> None:
    audio = tmp_path / "reply.ulaw"
    audio.write_bytes(b"\x01\x02\x03")
    args = build_parser().parse_args(
        [
            "--mode",
            "echo",
            "--port",
            "0",
            "--speed",
            "50",
            "--reply-audio",
            str(audio),
            "--api-key",
            "k",
        ]
    )
    config = config_from_args(args)
    assert config.behaviour.mode is Mode.ECHO
    assert config.behaviour.speed == 50
    assert config.behaviour.reply_audio == b"\x01\x02\x03"
    assert config.api_key == "k" and config.port == 0


def test_bad_speed_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exited:
        from services.realtime_sim.__main__ import main

        main(["--speed", "0"])
    assert exited.value.code == 2


def test_prints_the_url_serves_and_exits_zero_on_sigterm(tmp_path: Path) -> None:
    record = tmp_path / "sessions.jsonl"
    command = [sys.executable, "-m", "services.realtime_sim", "--port", "0", "--mode", "echo"]
    with subprocess.Popen(
        [*command, "--record", str(record)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        try:
            line = process.stdout.readline().strip()
            prefix = "realtime simulator listening on ws://127.0.0.1:"
            assert line.startswith(prefix) and line.endswith("/v1/realtime"), line
            assert int(line[len(prefix) :].split("/")[0]) > 0
            with connect(line.split()[-1]) as ws:
                assert json.loads(ws.recv(timeout=5))["type"] == "session.created"
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
        assert process.stdout.read() == ""  # exactly one line on stdout
        assert "opened" in process.stderr.read()
    assert len(record.read_text().splitlines()) == 1
