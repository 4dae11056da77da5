"""The Dockerfile, read as Docker reads it: stages, their instructions, what each image runs."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import re

import pytest

from services.config_catalog import all_variables
from shared.probes import LIVEZ_PATH
from tests.support.deploy import ROOT, STAGES, Stage, default_of, edge_routes

SERVICE_TARGETS = {
    "edge": "services.edge",
    "worker": "services.realtime_worker",
    "sim": "services.realtime_sim",
}
COMPILERS = re.compile(r"\b(gcc|g\+\+|clang|build-essential|make|cc|libc6-dev)\b")


def chain(name: str) -> list[Stage]:
    """The stage and the stages it is built FROM, nearest first."""
    stages = [STAGES[name]]
    while stages[-1].base in STAGES:
        stages.append(STAGES[stages[-1].base])
    return stages


def effective(name: str, keyword: str) -> str | None:
    """The last ``keyword`` (USER, ENTRYPOINT…) in effect for the image built from ``name``."""
    for stage in chain(name):
        found = stage.all(keyword)
        if found:
            return found[-1]
    return None


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def test_each_service_has_a_target_and_the_default_target_is_a_service() -> None:
    assert set(SERVICE_TARGETS) <= set(STAGES)
    assert list(STAGES)[-1] in SERVICE_TARGETS, "a plain `docker build .` must give a service"


@pytest.mark.parametrize("target", sorted(SERVICE_TARGETS))
def test_final_images_come_from_a_slim_python_base_without_build_stages(target: str) -> None:
    stages = chain(target)
    base = stages[-1].base
    assert re.fullmatch(r"python:3\.1[1-9][\w.]*-slim[\w.-]*(@sha256:[0-9a-f]{64})?", base), base
    assert not any(s.name.startswith("build") for s in stages), [s.name for s in stages]
    for stage in stages:
        for command in stage.all("RUN"):
            assert not COMPILERS.search(command), f"{stage.name}: compiler in {command!r}"
        for source in stage.all("COPY"):
            if "--from=" in source:
                assert source.split()[-1] == "/opt/switchboard", source


@pytest.mark.parametrize("target", sorted(SERVICE_TARGETS))
def test_images_run_as_a_non_root_user(target: str) -> None:
    user = effective(target, "USER")
    assert user is not None, f"{target} runs as root"
    uid = user.split(":")[0]
    assert uid not in ("root", "0") and uid.isdigit(), (
        f"USER {user}: use a numeric non-root uid so runAsNonRoot can verify it"
    )


@pytest.mark.parametrize("target", sorted(SERVICE_TARGETS))
def test_exec_form_entrypoint_runs_the_service_module(target: str) -> None:
    entrypoint = effective(target, "ENTRYPOINT")
    assert entrypoint is not None
    argv = exec_form(entrypoint)  # shell form would put /bin/sh between SIGTERM and Python
    assert argv[:2] == ["python", "-m"], argv
    assert argv[2] == SERVICE_TARGETS[target]
    assert importlib.util.find_spec(argv[2] + ".__main__") is not None, argv[2]
    for cmd in STAGES[target].all("CMD"):
        exec_form(cmd)


@pytest.mark.parametrize("target", sorted(SERVICE_TARGETS))
def test_healthcheck_is_exec_form_python_that_compiles(target: str) -> None:
    healthchecks = STAGES[target].all("HEALTHCHECK")
    assert len(healthchecks) == 1, f"{target} needs its own HEALTHCHECK"
    options, cmd = healthchecks[0].split(" CMD ", 1)
    assert "--interval=" in options and "--timeout=" in options
    argv = exec_form(cmd)
    assert argv[:2] == ["python", "-c"]
    compile(argv[2], f"HEALTHCHECK of {target}", "exec")


def test_healthchecks_probe_the_real_endpoints_on_the_configured_ports() -> None:
    edge = STAGES["edge"].all("HEALTHCHECK")[0]
    # /livez is served on the admin port only (on PORT it is a 404), by the event loop.
    assert "/livez" in edge and "os.environ.get('ADMIN_PORT', '8081')" in edge
    assert "/livez" in edge_routes()
    assert default_of("ADMIN_PORT") == "8081"
    assert STAGES["edge"].all("EXPOSE") == ["8080 8081"]
    assert default_of("PORT") == "8080"
    worker = STAGES["worker"].all("HEALTHCHECK")[0]
    assert f"{LIVEZ_PATH}'" in worker and "os.environ.get('METRICS_PORT', '9100')" in worker
    assert default_of("METRICS_PORT") == "9100"


def test_configuration_comes_only_from_the_environment() -> None:
    """ENV may restate a code default (documentation), never change one or carry a secret."""
    known = all_variables()
    for stage in STAGES.values():
        for env in stage.all("ENV"):
            for name, value in re.findall(r"(\w+)=(\S+)", env):
                if name in known:
                    assert value == default_of(name), f"ENV {name}={value} overrides the default"
                    assert not known[name][0].secret, f"secret {name} in the image"
        for copy in stage.all("COPY"):
            assert ".env" not in copy.split(), copy


def test_dependencies_install_from_the_lock_with_hashes() -> None:
    """The edge and worker images get runtime.txt, the simulator image sim.txt too (both
    exported from uv.lock, tests/deploy/test_requirements.py); every other pip install is the
    project itself, resolving nothing."""
    runs = " ".join(STAGES["build"].all("RUN"))
    assert "--require-hashes -r deploy/requirements/runtime.txt" in runs
    assert "--no-deps ." in runs, "the project must not resolve anything beyond the pins"
    sim_runs = " ".join(STAGES["build-sim"].all("RUN"))
    assert "--require-hashes -r deploy/requirements/sim.txt" in sim_runs
    for stage in STAGES.values():
        for run in stage.all("RUN"):
            for install in re.findall(r"pip install [^&;|]*", run):
                assert re.search(r"--require-hashes -r deploy/requirements/\w+\.txt", install) or (
                    "--no-deps" in install
                ), f"{stage.name}: {install!r} installs something outside the lock"
                assert "dev.txt" not in install, "dev tools never go into an image"


def test_dockerignore_lets_in_exactly_what_the_build_copies() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "**", "start from an empty context and allow-list"
    allowed = [p[1:].rstrip("/") for p in patterns if p.startswith("!")]

    def included(path: str) -> bool:
        return any(
            path == a or path.startswith(a + "/") or fnmatch.fnmatch(path, a) for a in allowed
        )

    for stage in STAGES.values():
        for copy in stage.all("COPY"):
            if "--from=" in copy:
                continue
            for source in copy.split()[:-1]:
                assert included(source), f"COPY {source} is excluded by .dockerignore"
                assert (ROOT / source).exists(), source
    for secret_file in (".env", ".venv", ".git", "demo-output"):
        assert not included(secret_file), f"{secret_file} must stay out of the build context"
