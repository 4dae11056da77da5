"""deploy/k8s: the kustomize base and example overlay, checked against the code's settings,
routes and metrics. `kubectl kustomize` renders them in one test when kubectl is installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.edge.settings import EdgeSettings
from services.realtime_worker.probe_server import METRICS_PATH
from services.realtime_worker.settings import WorkerSettings
from shared.probes import LIVEZ_PATH
from tests.support.deploy import (
    DEPLOY,
    K8S_BASE,
    K8S_OVERLAY,
    edge_routes,
    find,
    k8s_documents,
    load_yaml,
    load_yaml_all,
    registered_metrics,
    secret_variables,
    variables_read_by,
)

DOCS: list[dict[str, Any]] = [doc for _, doc in k8s_documents(K8S_BASE)]
COMPONENTS = {"edge": "switchboard-edge", "worker": "switchboard-worker"}
PRESTOP_SLEEP = {"edge": 5.0, "worker": 0.0}


def deployment(component: str) -> dict[str, Any]:
    return find(DOCS, "Deployment", COMPONENTS[component])


def container(component: str) -> dict[str, Any]:
    containers = deployment(component)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def config_map(component: str) -> dict[str, str]:
    refs = [e["configMapRef"]["name"] for e in container(component).get("envFrom", [])]
    assert refs == [COMPONENTS[component]]
    data: dict[str, str] = find(DOCS, "ConfigMap", refs[0])["data"]
    return data


def settings_env(component: str) -> dict[str, str]:
    """The environment a pod gets: its ConfigMap plus stand-ins for the Secret references."""
    env = dict(config_map(component))
    for item in container(component).get("env", []):
        if "secretKeyRef" in item.get("valueFrom", {}):
            env[item["name"]] = "secret-" + item["name"].lower()
        elif "fieldRef" in item.get("valueFrom", {}):
            env[item["name"]] = "pod-name-0"
        else:
            env[item["name"]] = item["value"]
    env["REDIS_URL"] = "redis://switchboard-redis:6379/0"
    return env


def with_mounted_config_maps(component: str, env: dict[str, str], root: Path) -> dict[str, str]:
    """``env`` with every path under a ConfigMap volume's mount pointing at a copy of that
    ConfigMap's files under ``root``: what the pod would read there."""
    spec = deployment(component)["spec"]["template"]["spec"]
    volumes = {
        v["name"]: v["configMap"]["name"] for v in spec.get("volumes", []) if "configMap" in v
    }
    mounted = dict(env)
    for mount in container(component).get("volumeMounts", []):
        if mount["name"] not in volumes:
            continue
        local = root / mount["name"]
        local.mkdir(parents=True)
        for filename, text in find(DOCS, "ConfigMap", volumes[mount["name"]])["data"].items():
            (local / filename).write_text(text)
        prefix = mount["mountPath"].rstrip("/") + "/"
        for name, value in env.items():
            if value.startswith(prefix):
                mounted[name] = str(local / value.removeprefix(prefix))
    return mounted


def port_number(component: str, port: int | str) -> int:
    if isinstance(port, int):
        return port
    (match,) = [p for p in container(component)["ports"] if p["name"] == port]
    number: int = match["containerPort"]
    return number


def test_kustomizations_list_files_that_exist() -> None:
    for directory in (K8S_BASE, K8S_OVERLAY):
        kustomization = load_yaml(directory / "kustomization.yaml")
        paths = kustomization.get("resources", []) + [
            p["path"] for p in kustomization.get("patches", []) if "path" in p
        ]
        assert paths
        for path in paths:
            assert (directory / path).exists(), f"{directory.name}: {path} does not exist"
    overlay = load_yaml(K8S_OVERLAY / "kustomization.yaml")
    assert "../../base" in overlay["resources"]
    images = {image["name"] for image in overlay["images"]}
    assert images == {container(c)["image"] for c in COMPONENTS}


def test_every_manifest_parses_and_names_its_kind() -> None:
    for directory in (K8S_BASE, K8S_OVERLAY):
        for path in directory.glob("*.yaml"):
            for doc in load_yaml_all(path):
                assert doc["apiVersion"] and doc["kind"], path
                if doc["kind"] != "Kustomization":
                    assert doc["metadata"]["name"], path


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_configuration_is_valid_for_the_code(component: str, tmp_path: Path) -> None:
    env = settings_env(component)
    unknown = set(env) - variables_read_by(component)
    assert not unknown, f"{component} is given variables it does not read: {unknown}"
    settings_class = EdgeSettings if component == "edge" else WorkerSettings
    # raises ConfigError naming any bad value (the agents file included)
    settings = settings_class.from_env(with_mounted_config_maps(component, env, tmp_path))
    assert [agent.name for agent in settings.agents.agents] == ["support", "reception"]
    leaked = set(config_map(component)) & secret_variables()
    assert not leaked, f"secrets belong in Secrets, not ConfigMaps: {leaked}"


def test_secrets_only_where_needed() -> None:
    def secret_refs(component: str) -> dict[str, str]:
        return {
            item["name"]: item["valueFrom"]["secretKeyRef"]["name"]
            for item in container(component).get("env", [])
            if "secretKeyRef" in item.get("valueFrom", {})
        }

    edge, worker = secret_refs("edge"), secret_refs("worker")
    assert "OPENAI_API_KEY" in worker and "OPENAI_API_KEY" not in edge
    assert "TWILIO_AUTH_TOKEN" in edge and "TWILIO_AUTH_TOKEN" not in worker
    assert "STREAM_TOKEN_SECRET" not in worker
    # The worker cannot read the edge's Secret or the other way round.
    assert "switchboard-worker" not in edge.values() and "switchboard-edge" not in worker.values()
    for component in COMPONENTS:
        for item in container(component).get("env", []):
            if item["name"] in secret_variables():
                assert "secretKeyRef" in item.get("valueFrom", {}), f"{item['name']} as a value"


def test_probes_point_at_real_routes_and_ports() -> None:
    edge, worker = container("edge"), container("worker")
    # Health is served on the admin port only (the public one answers it with 404).
    admin_port = int(config_map("edge")["ADMIN_PORT"])
    metrics_port = int(config_map("worker")["METRICS_PORT"])
    assert edge["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # Liveness is answered by the event loop (a stuck loop answers nothing), on both.
    assert edge["livenessProbe"]["httpGet"]["path"] == LIVEZ_PATH
    assert worker["livenessProbe"]["httpGet"]["path"] == LIVEZ_PATH
    assert worker["readinessProbe"]["httpGet"]["path"] == METRICS_PATH
    for probe in ("readinessProbe", "livenessProbe"):
        assert edge[probe]["httpGet"]["path"] in edge_routes()
        assert port_number("edge", edge[probe]["httpGet"]["port"]) == admin_port
        assert port_number("worker", worker[probe]["httpGet"]["port"]) == metrics_port


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_pods_run_locked_down(component: str) -> None:
    pod = deployment(component)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    security = container(component)["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert "add" not in security["capabilities"]
    mounts = {m["mountPath"] for m in container(component).get("volumeMounts", [])}
    assert "/tmp" in mounts, "a writable /tmp under a read-only root"


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_resources_have_requests_and_limits(component: str) -> None:
    resources = container(component)["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[kind]), f"{component}: {kind}"


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_grace_period_outlasts_the_drain(component: str) -> None:
    pod = deployment(component)["spec"]["template"]["spec"]
    drain = float(config_map(component)["DRAIN_TIMEOUT"])
    grace = pod["terminationGracePeriodSeconds"]
    assert grace > drain + PRESTOP_SLEEP[component], f"{component}: {grace}s"
    pre_stop = container(component).get("lifecycle", {}).get("preStop")
    if PRESTOP_SLEEP[component]:
        assert pre_stop == {"exec": {"command": ["sleep", f"{PRESTOP_SLEEP[component]:.0f}"]}}
    else:
        assert pre_stop is None


def test_selectors_match_pod_labels() -> None:
    pods = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
        for d in DOCS
        if d["kind"] == "Deployment"
    }

    def selects(selector: dict[str, str]) -> list[str]:
        return [name for name, labels in pods.items() if selector.items() <= labels.items()]

    for doc in DOCS:
        kind, spec = doc["kind"], doc.get("spec", {})
        if kind == "Deployment":
            assert selects(spec["selector"]["matchLabels"]) == [doc["metadata"]["name"]]
        elif kind == "Service":
            (target,) = selects(spec["selector"])
            pod_ports = {
                p["name"]: p["containerPort"]
                for c in find(DOCS, "Deployment", target)["spec"]["template"]["spec"]["containers"]
                for p in c["ports"]
            }
            for port in spec["ports"]:
                assert port["targetPort"] in pod_ports, f"{doc['metadata']['name']}: {port}"
        elif kind in ("PodDisruptionBudget", "NetworkPolicy"):
            key = "selector" if kind == "PodDisruptionBudget" else "podSelector"
            assert len(selects(spec[key]["matchLabels"])) == 1, doc["metadata"]["name"]
        elif kind == "HorizontalPodAutoscaler":
            find(DOCS, spec["scaleTargetRef"]["kind"], spec["scaleTargetRef"]["name"])


def test_service_monitors_scrape_every_metrics_port() -> None:
    services = [d for d in DOCS if d["kind"] == "Service"]
    monitors = [d for d in DOCS if d["kind"] == "ServiceMonitor"]
    scraped = set()
    for monitor in monitors:
        selector = monitor["spec"]["selector"]["matchLabels"]
        (service,) = [s for s in services if selector.items() <= s["metadata"]["labels"].items()]
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["path"] == "/metrics"
            assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
            scraped.add((service["spec"]["selector"]["app.kubernetes.io/name"], endpoint["port"]))
    assert scraped == {("switchboard-edge", "admin"), ("switchboard-worker", "metrics")}
    # The edge's metrics are on its admin port, not on the public one.
    assert port_number("edge", "admin") == int(config_map("edge")["ADMIN_PORT"])


def test_the_public_service_exposes_only_the_public_port() -> None:
    edge_port, admin_port = (int(config_map("edge")[name]) for name in ("PORT", "ADMIN_PORT"))
    assert edge_port != admin_port
    assert [(p["name"], p["containerPort"]) for p in container("edge")["ports"]] == [
        ("http", edge_port),
        ("admin", admin_port),
    ]
    public = find(DOCS, "Service", "switchboard-edge")["spec"]
    assert [port_number("edge", p["targetPort"]) for p in public["ports"]] == [edge_port]
    admin = find(DOCS, "Service", "switchboard-edge-admin")["spec"]
    assert admin.get("type", "ClusterIP") == "ClusterIP"
    assert [port_number("edge", p["targetPort"]) for p in admin["ports"]] == [admin_port]
    # Only the public Service is published: the example ingress routes to it alone.
    (ingress,) = [doc for _, doc in k8s_documents(K8S_OVERLAY) if doc["kind"] == "Ingress"]
    backends = [
        path["backend"]["service"]
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]
    assert backends == [{"name": "switchboard-edge", "port": {"name": "http"}}]


def test_worker_autoscaling_on_cpu_and_the_documented_active_calls_variant() -> None:
    hpa = find(DOCS, "HorizontalPodAutoscaler", "switchboard-worker")["spec"]
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    assert hpa["minReplicas"] >= 2
    (variant,) = load_yaml_all(K8S_BASE / "hpa-active-calls.example.yaml")
    metric = variant["spec"]["metrics"][0]["pods"]["metric"]["name"]
    assert metric in registered_metrics(), metric
    assert variant["metadata"]["name"] == "switchboard-worker"
    listed = load_yaml(K8S_BASE / "kustomization.yaml")["resources"]
    assert "hpa-active-calls.example.yaml" not in listed


def test_network_policies_allow_only_what_the_design_needs() -> None:
    def policy(name: str) -> dict[str, Any]:
        spec: dict[str, Any] = find(DOCS, "NetworkPolicy", name)["spec"]
        assert spec["policyTypes"] == ["Ingress", "Egress"], name
        return spec

    def egress_ports(spec: dict[str, Any]) -> set[int]:
        return {p["port"] for rule in spec["egress"] for p in rule["ports"]}

    monitoring = [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    edge = policy("switchboard-edge")
    public, admin = edge["ingress"]
    assert "from" not in public, "Twilio reaches the edge's public port from anywhere"
    assert [p["port"] for p in public["ports"]] == [int(config_map("edge")["PORT"])]
    assert admin["from"] == monitoring, "only Prometheus reaches the admin port"
    assert [p["port"] for p in admin["ports"]] == [int(config_map("edge")["ADMIN_PORT"])]
    assert egress_ports(edge) == {6379, 53}, "the edge talks only to Redis and DNS"

    worker = policy("switchboard-worker")
    (ingress,) = worker["ingress"]
    assert ingress["from"] == monitoring
    assert [p["port"] for p in ingress["ports"]] == [int(config_map("worker")["METRICS_PORT"])]
    assert egress_ports(worker) == {443, 6379, 53}

    redis = policy("switchboard-redis")
    (ingress,) = redis["ingress"]
    sources = {
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for peer in ingress["from"]
    }
    assert sources == set(COMPONENTS.values())
    assert redis["egress"] == []


def test_prometheus_rule_carries_the_alert_rules_file() -> None:
    rule = find(DOCS, "PrometheusRule", "switchboard")
    assert rule["spec"]["groups"] == load_yaml(DEPLOY / "prometheus" / "alerts.yml")["groups"], (
        "run deploy/k8s/sync_rules.py"
    )


def test_pod_disruption_budgets_keep_one_of_each() -> None:
    edge = find(DOCS, "PodDisruptionBudget", "switchboard-edge")["spec"]
    worker = find(DOCS, "PodDisruptionBudget", "switchboard-worker")["spec"]
    assert edge["minAvailable"] == 1 and deployment("edge")["spec"]["replicas"] >= 2
    assert worker["maxUnavailable"] == 1


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_overlay_renders_with_kubectl_kustomize() -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S_OVERLAY)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rendered = [d for d in yaml.safe_load_all(result.stdout) if d is not None]
    kinds = {d["kind"] for d in rendered}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "NetworkPolicy"} <= kinds
    for doc in rendered:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "switchboard", doc["metadata"]["name"]
        if doc["kind"] == "Deployment" and doc["metadata"]["name"] != "switchboard-redis":
            image = doc["spec"]["template"]["spec"]["containers"][0]["image"]
            assert image.startswith("registry.example.com/") and image.endswith(":0.1.0")
