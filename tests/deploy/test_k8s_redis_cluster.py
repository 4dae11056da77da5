"""deploy/k8s/components/redis-cluster: the opt-in Kustomize component that runs the edges
and workers against a cluster-mode Redis (REDIS_CLUSTER, docs/scaling.md)."""

from __future__ import annotations

from typing import Any

from shared.config import boolean
from tests.support.deploy import (
    DEPLOY,
    K8S_BASE,
    K8S_OVERLAY,
    component_documents,
    find,
    load_yaml_all,
    variables_read_by,
)

COMPONENT = DEPLOY / "k8s" / "components" / "redis-cluster"
CLUSTER_PODS = {"app.kubernetes.io/name": "switchboard-redis-cluster"}


def test_edges_and_workers_both_run_with_redis_cluster() -> None:
    docs = component_documents(COMPONENT)
    for role in ("edge", "worker"):
        config = find(docs, "ConfigMap", f"switchboard-{role}")["data"]
        assert config == {"REDIS_CLUSTER": "true"}
        assert boolean(config["REDIS_CLUSTER"]) is True
        assert set(config) <= variables_read_by(role)


def _egress_to_redis(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        rule
        for rule in policy["spec"]["egress"]
        if {"port": 6379, "protocol": "TCP"} in rule.get("ports", [])
    ]


def test_both_reach_every_cluster_node_and_keep_the_rest_of_their_egress() -> None:
    docs = component_documents(COMPONENT)
    base = load_yaml_all(K8S_BASE / "networkpolicy.yaml")
    for role in ("edge", "worker"):
        name = f"switchboard-{role}"
        patched, original = find(docs, "NetworkPolicy", name), find(base, "NetworkPolicy", name)
        (redis_rule,) = _egress_to_redis(patched)
        assert redis_rule["to"] == [{"podSelector": {"matchLabels": CLUSTER_PODS}}]
        others = [r for r in patched["spec"]["egress"] if r is not redis_rule]
        (old_redis_rule,) = _egress_to_redis(original)
        assert others == [r for r in original["spec"]["egress"] if r != old_redis_rule]


def test_the_single_redis_of_the_base_is_removed() -> None:
    deleted = {
        (doc["kind"], doc["metadata"]["name"])
        for doc in component_documents(COMPONENT)
        if doc.get("$patch") == "delete"
    }
    base = {
        (doc["kind"], doc["metadata"]["name"]) for doc in load_yaml_all(K8S_BASE / "redis.yaml")
    }
    assert deleted == base | {("NetworkPolicy", "switchboard-redis")}


def test_the_example_overlay_offers_the_component() -> None:
    text = (K8S_OVERLAY / "kustomization.yaml").read_text()
    assert "#   - ../../components/redis-cluster" in text
    assert (K8S_OVERLAY / "../../components/redis-cluster").resolve() == COMPONENT.resolve()
