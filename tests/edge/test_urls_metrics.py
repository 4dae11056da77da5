"""Public URLs derived from PUBLIC_URL, and the edge's metrics."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from services.edge.metrics import EdgeMetrics
from services.edge.urls import PublicUrls


def test_urls_of_a_plain_host() -> None:
    urls = PublicUrls("https://edge.example.com")
    assert urls.voice == "https://edge.example.com/twilio/voice"
    assert urls.resume == "https://edge.example.com/twilio/voice/resume"
    assert urls.status == "https://edge.example.com/twilio/stream-status"
    assert urls.media == "wss://edge.example.com/twilio/media"


def test_urls_keep_port_and_path_prefix() -> None:
    urls = PublicUrls("https://example.com:8443/switchboard")
    assert urls.voice == "https://example.com:8443/switchboard/twilio/voice"
    assert urls.media == "wss://example.com:8443/switchboard/twilio/media"


@pytest.mark.parametrize(
    ("base", "media"),
    [
        ("http://localhost:8080", "ws://localhost:8080/twilio/media"),
        ("https://[2001:db8::1]", "wss://[2001:db8::1]/twilio/media"),
    ],
)
def test_stream_url_scheme(base: str, media: str) -> None:
    assert PublicUrls(base).media == media


def test_metrics_are_declared_on_the_given_registry() -> None:
    registry = CollectorRegistry()
    metrics = EdgeMetrics.create(registry)
    metrics.active_calls.inc()
    metrics.malformed.labels("bad_base64").inc(2)
    metrics.rejected.labels("/twilio/voice", "bad_signature").inc()
    metrics.call_audio_out_bytes.labels("CA1").inc(160)
    assert registry.get_sample_value("switchboard_edge_active_calls") == 1
    assert (
        registry.get_sample_value("switchboard_edge_malformed_input_total", {"kind": "bad_base64"})
        == 2
    )
    assert (
        registry.get_sample_value(
            "switchboard_edge_rejected_requests_total",
            {"route": "/twilio/voice", "reason": "bad_signature"},
        )
        == 1
    )
    assert (
        registry.get_sample_value("switchboard_call_audio_out_bytes_total", {"call_sid": "CA1"})
        == 160
    )
    metrics.call_audio_out_bytes.remove("CA1")
    assert "CA1" not in generate_latest(registry).decode()


def test_two_registries_do_not_collide() -> None:
    # Each app (and each test) builds its own metrics; a second set must not raise.
    first, second = CollectorRegistry(), CollectorRegistry()
    EdgeMetrics.create(first).active_calls.inc()
    EdgeMetrics.create(second)
    assert first.get_sample_value("switchboard_edge_active_calls") == 1
    assert second.get_sample_value("switchboard_edge_active_calls") == 0
