"""Prometheus (scrape config, alert rules) and Grafana (provisioning, dashboard) against the
metrics the edge and the workers register: a query on a name the code does not export would
show an empty panel or an alert that can never fire."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.deploy import (
    DEPLOY,
    SERVICES,
    check_promql,
    environment,
    load_json,
    load_yaml,
    registered_metrics,
)

PROMETHEUS = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
ALERTS = load_yaml(DEPLOY / "prometheus" / "alerts.yml")
RULES: list[dict[str, Any]] = [rule for group in ALERTS["groups"] for rule in group["rules"]]
DASHBOARD = load_json(DEPLOY / "grafana" / "dashboards" / "switchboard.json")
PANELS = [panel for panel in DASHBOARD["panels"] if panel["type"] != "row"]


def pending_metrics(rule: dict[str, Any]) -> set[str]:
    """A rule written ahead of its metric names it in the `pending_metric` label."""
    name = rule.get("labels", {}).get("pending_metric")
    if not name:
        return set()
    suffixes = ("", "_bucket", "_sum", "_count", "_total")
    return {name + suffix for suffix in suffixes}


def test_prometheus_scrapes_every_edge_and_worker_replica() -> None:
    jobs = {job["job_name"]: job for job in PROMETHEUS["scrape_configs"]}
    expected = {
        "switchboard-edge": ("edge", int(environment("edge")["ADMIN_PORT"])),
        "switchboard-worker": (
            "realtime-worker",
            int(environment("realtime-worker")["METRICS_PORT"]),
        ),
    }
    for job_name, (service, port) in expected.items():
        (sd,) = jobs[job_name]["dns_sd_configs"]
        assert sd["names"] == [service] and service in SERVICES
        assert sd["type"] == "A", "one A record per replica"
        assert sd["port"] == port
        assert jobs[job_name].get("metrics_path", "/metrics") == "/metrics"
    mounted = [v.split(":")[1] for v in SERVICES["prometheus"]["volumes"]]
    assert PROMETHEUS["rule_files"] == ["/etc/prometheus/alerts.yml"]
    assert "/etc/prometheus/alerts.yml" in mounted


@pytest.mark.parametrize(
    "name",
    [
        "SwitchboardNoWorkerCapacity",
        "SwitchboardRealtimeErrors",
        "SwitchboardRealtimeFormatMismatch",
        "SwitchboardRedisDown",
        "SwitchboardDispatchBacklog",
    ],
)
def test_the_required_alerts_exist(name: str) -> None:
    (rule,) = [r for r in RULES if r.get("alert") == name]
    assert rule["labels"]["severity"] in ("critical", "warning", "info")
    assert rule["annotations"]["summary"]


@pytest.mark.parametrize("rule", RULES, ids=[r["alert"] for r in RULES])
def test_alert_expressions_use_exported_metrics(rule: dict[str, Any]) -> None:
    problems = check_promql(rule["expr"], allowed_missing=pending_metrics(rule))
    assert not problems, problems


def test_no_rule_waits_for_a_metric_the_code_lacks() -> None:
    """Rules written ahead of the code would be marked `pending_metric`; none is left."""
    pending = {r["alert"] for r in RULES if "pending_metric" in r.get("labels", {})}
    assert pending == set()
    exported = registered_metrics().get("switchboard_edge_dispatch_wait_seconds_bucket")
    assert exported is not None and exported.kind == "histogram"


def test_format_mismatch_alert_watches_the_code_the_worker_counts() -> None:
    (rule,) = [r for r in RULES if r["alert"] == "SwitchboardRealtimeFormatMismatch"]
    assert 'switchboard_worker_realtime_errors_total{code="format_mismatch"}' in rule["expr"]
    assert rule["labels"]["severity"] == "critical"


def test_grafana_provisions_the_compose_prometheus_and_the_dashboard() -> None:
    provisioning = DEPLOY / "grafana" / "provisioning"
    (source,) = load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    (provider,) = load_yaml(provisioning / "dashboards" / "switchboard.yml")["providers"]
    mounts = dict(v.split(":")[:2] for v in SERVICES["grafana"]["volumes"])
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"


def test_dashboard_structure() -> None:
    ids = [panel["id"] for panel in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    assert DASHBOARD["uid"] == "switchboard"
    (datasource,) = DASHBOARD["templating"]["list"]
    assert datasource["type"] == "datasource" and datasource["query"] == "prometheus"
    for panel in PANELS:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"


@pytest.mark.parametrize("panel", PANELS, ids=[p["title"] for p in PANELS])
def test_dashboard_queries_use_exported_metrics(panel: dict[str, Any]) -> None:
    for target in panel["targets"]:
        problems = check_promql(target["expr"])
        assert not problems, problems


def test_dashboard_shows_per_call_bytes_out_and_the_required_views() -> None:
    exprs = " ".join(t["expr"] for p in PANELS for t in p["targets"])
    assert "sum by (call_sid) (rate(switchboard_call_audio_out_bytes_total[1m]))" in exprs
    for metric in (
        "switchboard_edge_active_calls",
        "switchboard_worker_active_calls",
        "switchboard_edge_audio_out_bytes_total",
        "switchboard_worker_realtime_errors_total",
        "switchboard_edge_malformed_input_total",
        "switchboard_edge_redis_up",
        "switchboard_worker_redis_up",
    ):
        assert metric in exprs, metric
    assert "switchboard_call_audio_out_bytes_total" in registered_metrics()


@pytest.mark.parametrize(
    "metric",
    [
        "switchboard_relay_latency_seconds_bucket",
        "switchboard_edge_mark_round_trip_seconds_bucket",
        "switchboard_worker_speech_to_clear_seconds_bucket",
        "switchboard_edge_webhook_to_first_audio_seconds_bucket",
        "switchboard_edge_dispatch_wait_seconds_bucket",
        "switchboard_worker_barge_in_unheard_ms_bucket",
        "switchboard_worker_barge_ins_total",
        "switchboard_edge_format_mismatch_total",
        "switchboard_redis_errors_total",
        "switchboard_redis_reconnects_total",
    ],
)
def test_dashboard_shows_each_latency_playback_and_redis_indicator(metric: str) -> None:
    exprs = [target["expr"] for panel in PANELS for target in panel["targets"]]
    assert any(metric in expr for expr in exprs), metric


def test_relay_latency_is_shown_per_hop_at_three_percentiles() -> None:
    (panel,) = [p for p in PANELS if p["title"] == "Relay latency per hop"]
    exprs = [t["expr"] for t in panel["targets"]]
    assert [e.split(",")[0] for e in exprs] == [
        f"histogram_quantile({q}" for q in ("0.5", "0.95", "0.99")
    ]
    assert all("by (le, hop)" in e for e in exprs)
