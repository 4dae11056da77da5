"""What the deployment checks share: the repository's paths, parsed files, and the code's truth.

The code's truth is read from the code itself, never restated here: the variables from
``shared.config.all_variables()``, the metric names from ``EdgeMetrics.create`` and
``WorkerMetrics.create`` on a fresh registry, the edge's routes from ``create_app``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator, Mapping
from collections.abc import Set as AbstractSet
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from services.config_catalog import all_variables
from services.edge.metrics import EdgeMetrics
from services.edge.settings import EdgeSettings
from services.realtime_worker.metrics import WorkerMetrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S_BASE = DEPLOY / "k8s" / "base"
K8S_OVERLAY = DEPLOY / "k8s" / "overlays" / "example"

# Variables that docker-compose.yml interpolates but Switchboard never reads. Each one must be
# documented in .env.example (tests/deploy/test_env_example.py).
COMPOSE_ONLY_VARIABLES = frozenset(
    {"EDGE_PUBLISHED_PORT", "PROMETHEUS_PORT", "GRAFANA_PORT", "GRAFANA_ADMIN_PASSWORD"}
)
# Settings for the test suite only (shared.testing_hooks): no deployment file passes them on.
TEST_ONLY_VARIABLES = frozenset({"SWITCHBOARD_TEST_HOOKS"})
# Labels Prometheus itself attaches to scraped series (target and Kubernetes discovery labels).
TARGET_LABELS = frozenset({"instance", "job", "namespace", "pod", "service", "container"})

METRIC_RE = re.compile(r"\bswitchboard_[a-zA-Z0-9_]+")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_yaml_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def load_json(path: Path) -> Any:
    return json.loads(path.read_text())


def variables_read_by(service: str) -> set[str]:
    """Environment variables read by ``edge`` or ``worker``."""
    return {name for name, (_, services) in all_variables().items() if service in services}


def default_of(name: str) -> str | None:
    return all_variables()[name][0].default


def secret_variables() -> set[str]:
    return {name for name, (var, _) in all_variables().items() if var.secret}


@dataclasses.dataclass(frozen=True)
class Metric:
    """One metric family as exposed: the sample names PromQL can use, and its label names."""

    family: str
    kind: str
    labels: tuple[str, ...]

    def sample_names(self) -> set[str]:
        if self.kind == "counter":
            return {f"{self.family}_total", f"{self.family}_created"}
        if self.kind == "histogram":
            return {f"{self.family}_{s}" for s in ("bucket", "sum", "count", "created")}
        if self.kind == "summary":
            return {self.family} | {f"{self.family}_{s}" for s in ("sum", "count", "created")}
        return {self.family}


@cache
def registered_metrics() -> dict[str, Metric]:
    """Every sample name the edge and the workers export, mapped to its metric family."""
    # One registry each, as in production: families such as the relay latency are exported
    # under the same name by both.
    metric_sets: list[Any] = [
        EdgeMetrics.create(CollectorRegistry()),
        WorkerMetrics.create(CollectorRegistry()),
    ]
    by_family: dict[str, Metric] = {}
    for metric_set in metric_sets:
        for field in dataclasses.fields(metric_set):
            collector = getattr(metric_set, field.name)
            labels = tuple(getattr(collector, "_labelnames", ()))
            for family in collector.describe():
                by_family[family.name] = Metric(family.name, family.type, labels)
    names: dict[str, Metric] = {}
    for metric in by_family.values():
        for sample in metric.sample_names():
            names[sample] = metric
    return names


def metric_names_in(promql: str) -> set[str]:
    return set(METRIC_RE.findall(promql))


def grouping_labels_in(promql: str) -> set[str]:
    """Label names in ``by (…)``/``without (…)``/``on (…)`` clauses and ``{label…}`` matchers."""
    labels: set[str] = set()
    for clause in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", promql):
        labels.update(label.strip() for label in clause.split(",") if label.strip())
    for matchers in re.findall(r"switchboard_[a-zA-Z0-9_]+\{([^}]*)\}", promql):
        labels.update(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", matchers))
    return labels


def check_promql(promql: str, allowed_missing: AbstractSet[str] = frozenset()) -> list[str]:
    """Problems with ``promql``: metric names the code does not export, unknown labels."""
    known = registered_metrics()
    problems = []
    used = metric_names_in(promql)
    if not used:
        problems.append(f"no switchboard metric in {promql!r}")
    for name in sorted(used - set(known) - allowed_missing):
        problems.append(f"{name} is not exported by the edge or the workers")
    labels_available = set(TARGET_LABELS) | {"le"}
    for name in used & set(known):
        labels_available.update(known[name].labels)
    for label in sorted(grouping_labels_in(promql) - labels_available):
        problems.append(f"label {label!r} is on none of {sorted(used)}")
    return problems


@cache
def edge_routes() -> frozenset[str]:
    """The paths the edge's Starlette app serves (built without starting it)."""
    from services.edge.app import create_app

    settings = EdgeSettings.from_env(
        {"PUBLIC_URL": "https://edge.example.com", "TWILIO_AUTH_TOKEN": "test-token"}
    )
    app = create_app(settings)
    return frozenset(getattr(route, "path", "") for route in app.routes)


def interpolation_names(text: str) -> set[str]:
    """Variable names a compose file interpolates (``$VAR``, ``${VAR}``, ``${VAR:-x}``…)."""
    text = text.replace("$$", "")
    return set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", text))


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation of one value: ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``."""

    def replace(match: re.Match[str]) -> str:
        name, op, default = match.group(1), match.group(2), match.group(3) or ""
        if op == ":-":
            return env.get(name) or default
        if op == "-":
            return env[name] if name in env else default
        return env.get(name, "")

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|-)([^}]*))?\}", replace, value)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines of an env file (comments and blank lines skipped)."""
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value
    return values


def k8s_documents(kustomization_dir: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every manifest a kustomization lists (not following nested kustomizations)."""
    kustomization = load_yaml(kustomization_dir / "kustomization.yaml")
    for resource in kustomization.get("resources", []):
        path = kustomization_dir / resource
        if path.is_file():
            for doc in load_yaml_all(path):
                yield path, doc


def component_documents(component: Path) -> list[dict[str, Any]]:
    """Every document a Kustomize Component directory adds or patches in."""
    kustomization = load_yaml(component / "kustomization.yaml")
    assert kustomization["kind"] == "Component"
    paths = kustomization.get("resources", []) + [p["path"] for p in kustomization["patches"]]
    return [doc for path in paths for doc in load_yaml_all(component / path)]


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


# --- the Dockerfile, read as Docker reads it ---------------------------------------------

DOCKERFILE = (ROOT / "Dockerfile").read_text()


@dataclasses.dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse(text: str) -> list[Stage]:
    """Stages of a Dockerfile: comments dropped, continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "ARG" and not stages:
            name, _, value = rest.partition("=")
            args[name] = value
        elif keyword == "FROM":
            match = re.fullmatch(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            assert match, f"cannot read FROM {rest}"
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), match[1])
            stages.append(Stage(match[2] or f"stage{len(stages)}", base))
        else:
            stages[-1].instructions.append((keyword, rest))
    return stages


STAGES = {stage.name: stage for stage in parse(DOCKERFILE)}


# --- docker-compose.yml ------------------------------------------------------------------

COMPOSE_PATH = ROOT / "docker-compose.yml"
COMPOSE: dict[str, Any] = load_yaml(COMPOSE_PATH)
SERVICES: dict[str, Any] = COMPOSE["services"]


def environment(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment", {})
    assert isinstance(env, dict), f"{service}: use the mapping form of environment"
    return {k: str(v) for k, v in env.items()}
