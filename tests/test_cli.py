"""The ``switchboard`` console script: each program under one command."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from services.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]


def test_the_console_script_is_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"] == {"switchboard": "services.cli:main"}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_reaches_its_program(name: str) -> None:
    module, takes_argv, _ = COMMANDS[name]
    program = __import__(module, fromlist=["main"])
    assert callable(program.main)
    if takes_argv:  # its own --help: proof the arguments went through
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0


def test_doctor_runs_through_the_console_entry() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "doctor", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert "--tone" in result.stdout and "--json" in result.stdout


def test_unknown_command_and_stray_arguments_are_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["doktor"]) == 2
    assert "unknown command 'doktor'" in capsys.readouterr().err
    assert main(["edge", "--port", "9"]) == 2
    assert "configured from the environment" in capsys.readouterr().err
    assert main([]) == 2
    assert "doctor" in capsys.readouterr().out
