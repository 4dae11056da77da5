from __future__ import annotations

import orjson
import pytest

from services.realtime_worker import openai_protocol as rt


def error_event(code: str, error_type: str = "invalid_request_error") -> rt.ErrorEvent:
    event = rt.parse_server_event(
        orjson.dumps(
            {
                "type": "error",
                "event_id": "event_1",
                "error": {"type": error_type, "code": code, "message": "m", "event_id": "sb_x_1"},
            }
        )
    )
    assert isinstance(event, rt.ErrorEvent)
    return event


@pytest.mark.parametrize(
    "code",
    [
        "invalid_api_key",
        "insufficient_quota",
        "model_not_found",
        "unsupported_audio_format",
        "beta_api_shape_disabled",
    ],
)
def test_errors_no_new_session_would_cure_are_fatal(code: str) -> None:
    assert rt.is_fatal(error_event(code).code)


def test_server_errors_are_retryable_not_fatal() -> None:
    event = error_event("internal", error_type="server_error")
    assert event.error_type == "server_error"
    assert not rt.is_fatal(event.code)


def test_an_expired_session_is_replaced_not_fatal() -> None:
    # Beta-era servers said so with an error event; a new session is exactly the cure.
    assert not rt.is_fatal("session_expired")


@pytest.mark.parametrize(
    "code",
    [
        "response_cancel_not_active",
        "invalid_value",
        "unknown",
        "conversation_already_has_active_response",
        "invalid_tool_call_id",
    ],
)
def test_errors_about_one_client_event_keep_the_call(code: str) -> None:
    event = error_event(code)
    assert not rt.is_fatal(event.code)
    assert event.event_id == "sb_x_1"


def test_metric_label_is_bounded_whatever_the_server_sends() -> None:
    assert rt.metric_code("invalid_value") == "invalid_value"
    assert rt.metric_code("x" * 200) == "other"
    assert rt.metric_code('bad"label\n') == "other"
