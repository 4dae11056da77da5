"""``python -m services.call_sim.twilio_api`` as a user runs it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from services.call_sim.twilio_api import _parser, config_from_args, main

ROOT = Path(__file__).resolve().parents[2]
SID = "AC" + "0" * 32
KEY = "SK" + "1" * 32


def test_the_command_line_builds_the_stand_in(tmp_path: Path) -> None:
    audio = tmp_path / "hello.ulaw"
    audio.write_bytes(b"\x10" * 800)
    args = _parser().parse_args(
        [
            "--account-sid",
            SID,
            "--auth-token",
            "token",
            "--api-key",
            f"{KEY}:secret",
            "--number",
            "+15005550006",
            "--party",
            "+15005550010=machine-silence",
            "--default-party",
            "busy",
            "--caller-audio",
            str(audio),
            "--ring-s",
            "0.5",
            "--edge",
            "http://127.0.0.1:8080",
            "--public-url",
            "https://edge.example.com",
        ]
    )
    config = config_from_args(args)
    assert config.account.api_keys == {KEY: "secret"}
    assert config.account.numbers == frozenset({"+15005550006"})
    assert config.parties == {"+15005550010": "machine-silence"}
    assert config.default_party == "busy" and config.caller_audio == b"\x10" * 800
    assert config.party.ring_s == 0.5 and config.edge_urls == ("http://127.0.0.1:8080",)
    assert config.public_url == "https://edge.example.com"


@pytest.mark.parametrize(
    "argv",
    [
        ["--auth-token", "t"],  # no account
        ["--account-sid", "AC123", "--auth-token", "t"],
        ["--account-sid", SID],  # no token
        ["--account-sid", SID, "--auth-token", "t", "--party", "+15005550010=robot"],
        ["--account-sid", SID, "--auth-token", "t", "--api-key", KEY],
        ["--account-sid", SID, "--auth-token", "t", "--ring-s", "-1"],
    ],
)
def test_a_bad_command_line_exits_2(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TWILIO_ACCOUNT_SID", raising=False)
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2


def test_prints_the_url_serves_and_exits_zero_on_sigterm() -> None:
    command = [sys.executable, "-m", "services.call_sim.twilio_api", "--port", "0"]
    with subprocess.Popen(
        [*command, "--account-sid", SID, "--auth-token", "token", "--number", "+15005550006"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        try:
            line = process.stdout.readline().strip()
            prefix = "twilio api stand-in listening on http://127.0.0.1:"
            assert line.startswith(prefix) and int(line[len(prefix) :]) > 0, line
            url = line.split()[-1]
            calls = httpx.post(
                f"{url}/2010-04-01/Accounts/{SID}/Calls.json",
                data={"To": "+15005550001", "From": "+15005550006"},
                auth=(SID, "token"),
            )
            assert (calls.status_code, calls.json()["code"]) == (400, 21200)
            assert httpx.get(f"{url}/_sim/calls").json() == []
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
        assert process.stdout.read() == ""  # exactly one line on stdout
        assert "token" not in process.stderr.read()
