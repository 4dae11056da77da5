"""uv.lock and the requirement files exported from it: the lock covers every dependency the
project declares, each consumer (the images, `make setup`) gets exactly its own subset with
hashes, and no dev tool ships in an image.

These checks read the files themselves (no uv needed); `make check-generated` also asks uv
whether uv.lock still satisfies pyproject.toml and whether the exports are what uv writes.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from tests.support.deploy import DEPLOY, ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
LOCK_TEXT = (ROOT / "uv.lock").read_text()
LOCK = tomllib.loads(LOCK_TEXT)
REQUIREMENTS = DEPLOY / "requirements"
# Who installs which export, and with which extras.
EXPORTS = {
    "runtime.txt": (),  # the edge and worker images
    "sim.txt": ("sim",),  # the realtime simulator image
    "dev.txt": ("sim", "dev"),  # make setup, CI
}
IMAGE_EXPORTS = ("runtime.txt", "sim.txt")
# The environment of CI and the images: CPython 3.11 on Linux (amd64; arm64 resolves the same).
ENVIRONMENT = {
    "python_version": "3.11",
    "python_full_version": "3.11.14",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "extra": "",
}
STALE = "run `make lock`"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def applies(marker: str | None) -> bool:
    return marker is None or Marker(marker).evaluate(ENVIRONMENT)


# --- the lock ---------------------------------------------------------------------------------

PACKAGES: dict[str, list[dict[str, Any]]] = {}
for _package in LOCK["package"]:
    PACKAGES.setdefault(canonical(_package["name"]), []).append(_package)
(PROJECT_ENTRY,) = PACKAGES["switchboard"]


def declared() -> Iterable[tuple[str | None, Requirement]]:
    """(extra or None, requirement) for every dependency pyproject.toml declares."""
    for requirement in PYPROJECT["dependencies"]:
        yield None, Requirement(requirement)
    for extra, requirements in PYPROJECT["optional-dependencies"].items():
        for requirement in requirements:
            yield extra, Requirement(requirement)


def locked_package(name: str, version: str | None = None) -> dict[str, Any]:
    candidates = [p for p in PACKAGES[name] if version is None or p["version"] == version]
    assert len(candidates) == 1, f"{name} {version}: {len(candidates)} entries in uv.lock"
    return candidates[0]


def closure(extras: tuple[str, ...]) -> dict[str, str]:
    """name → version of everything the project with ``extras`` installs in ENVIRONMENT,
    followed through uv.lock's dependency graph."""
    found: dict[str, str] = {}
    roots = list(PROJECT_ENTRY.get("dependencies", []))
    for extra in extras:
        roots += PROJECT_ENTRY["optional-dependencies"][extra]
    todo = roots
    seen: set[tuple[str, str, str]] = set()
    while todo:
        dependency = todo.pop()
        if not applies(dependency.get("marker")):
            continue
        name = canonical(dependency["name"])
        package = locked_package(name, dependency.get("version"))
        wanted = dependency.get("extra", [])
        key = (name, package["version"], ",".join(sorted(wanted)))
        if key in seen:
            continue
        seen.add(key)
        found[name] = package["version"]
        todo += package.get("dependencies", [])
        for extra in wanted:
            todo += package.get("optional-dependencies", {}).get(extra, [])
    return found


def test_the_lock_was_made_from_this_pyproject() -> None:
    """uv.lock records what it resolved: the same dependencies, extras and version ranges."""

    def marker(text: str) -> str:
        return str(Marker(text)) if text else ""

    recorded = {
        (
            canonical(r["name"]),
            marker(r.get("marker", "")),
            str(SpecifierSet(r.get("specifier", ""))),
        )
        for r in PROJECT_ENTRY["metadata"]["requires-dist"]
    }
    wanted = set()
    for extra, requirement in declared():
        markers = [str(requirement.marker)] if requirement.marker else []
        if extra:
            markers.append(f"extra == '{extra}'")
        wanted.add(
            (canonical(requirement.name), marker(" and ".join(markers)), str(requirement.specifier))
        )
    assert recorded == wanted, f"uv.lock is stale against pyproject.toml: {STALE}"
    assert PROJECT_ENTRY["metadata"]["provides-extras"] == list(PYPROJECT["optional-dependencies"])
    assert LOCK["requires-python"] == PYPROJECT["requires-python"]


@pytest.mark.parametrize(
    ("extra", "requirement"), list(declared()), ids=lambda v: str(v) if v else "runtime"
)
def test_every_declared_dependency_is_locked_in_a_version_it_allows(
    extra: str | None, requirement: Requirement
) -> None:
    name = canonical(requirement.name)
    assert name in PACKAGES, f"uv.lock lacks {name}: {STALE}"
    for package in PACKAGES[name]:
        assert requirement.specifier.contains(package["version"], prereleases=True), (
            f"uv.lock has {name} {package['version']}, pyproject.toml asks {requirement}: {STALE}"
        )
        for extra_name in requirement.extras:
            assert extra_name in package.get("optional-dependencies", {}), (name, extra_name)


def test_every_locked_file_has_a_hash() -> None:
    for name, packages in PACKAGES.items():
        for package in packages:
            if "editable" in package["source"]:
                continue  # the project itself
            files = package.get("wheels", []) + ([package["sdist"]] if "sdist" in package else [])
            assert files and all(f["hash"].startswith("sha256:") for f in files), name


# --- the exports ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    marker: str | None
    hashes: frozenset[str]


def pins(filename: str) -> list[Pin]:
    """The requirements of an exported file (pip's syntax: continuation lines, comments)."""
    text = (REQUIREMENTS / filename).read_text()
    logical = re.sub(r"\\\n\s*", " ", text)
    found = []
    for line in logical.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        hashes = frozenset(re.findall(r"--hash=(sha256:[0-9a-f]{64})", line))
        spec = re.sub(r"\s*--hash=\S+", "", line).strip()
        requirement = Requirement(spec)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{filename}: not pinned: {spec}"
        assert hashes, f"{filename}: no hash for {spec}"
        marker = str(requirement.marker) if requirement.marker else None
        found.append(Pin(canonical(requirement.name), specifier.version, marker, hashes))
    return found


def installed_by(filename: str) -> dict[str, str]:
    """name → version that `pip install -r filename` installs in ENVIRONMENT."""
    return {pin.name: pin.version for pin in pins(filename) if applies(pin.marker)}


@pytest.mark.parametrize("filename", sorted(EXPORTS))
def test_each_export_pins_the_locked_versions_and_hashes(filename: str) -> None:
    for pin in pins(filename):
        package = locked_package(pin.name, pin.version)
        files = package.get("wheels", []) + ([package["sdist"]] if "sdist" in package else [])
        assert pin.hashes <= {f["hash"] for f in files}, (
            f"{filename}: {pin.name}: run make generate"
        )
    assert "switchboard" not in {pin.name for pin in pins(filename)}, (
        "the project is installed from source with --no-deps, not pinned"
    )


@pytest.mark.parametrize("filename", sorted(EXPORTS))
def test_each_export_is_exactly_what_its_extras_need(filename: str) -> None:
    """Every dependency of the project with those extras, in its locked version, and nothing
    more: an image gets no package it does not need."""
    assert installed_by(filename) == closure(EXPORTS[filename]), (
        f"{filename} is not uv.lock's subset for extras {EXPORTS[filename]}: run `make generate`"
    )


def test_no_dev_tool_ships_in_an_image() -> None:
    dev_tools = set(closure(("sim", "dev"))) - set(closure(("sim",)))
    assert {"pytest", "mypy", "ruff", "uv", "hypothesis", "fakeredis"} <= dev_tools
    for filename in IMAGE_EXPORTS:
        shipped = {pin.name for pin in pins(filename)}  # under any marker
        assert not shipped & dev_tools, f"{filename} ships {shipped & dev_tools}"
    assert not {pin.name for pin in pins("runtime.txt")} & {"openai", "pydantic"}


def test_the_python_version_is_stated_and_is_the_one_ci_and_the_images_use() -> None:
    assert (
        LOCK_TEXT.startswith("#") and "Locked for CPython 3.11" in LOCK_TEXT.split("\nversion")[0]
    )
    for filename in EXPORTS:
        assert "Locked for CPython 3.11." in (REQUIREMENTS / filename).read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-", dockerfile, re.M)
    assert "PYTHON=python3.11" in (ROOT / ".ci/run").read_text()


def test_make_setup_installs_from_the_lock_and_the_project_without_resolving() -> None:
    makefile = (ROOT / "Makefile").read_text()
    setup = makefile.split("\n$(STAMP):", 1)[1].split("\n\n", 1)[0]
    assert "install --quiet --require-hashes -r deploy/requirements/dev.txt" in setup
    assert "install --quiet --no-deps -e ." in setup
    assert setup.index("--require-hashes") < setup.index("--no-deps")
    assert "upgrade" not in setup, "every package comes from the lock"
