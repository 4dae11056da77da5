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


@pytest.mark.parametrize("code", sorted(rt.FATAL_ERROR_CODES))
def test_session_wide_errors_end_the_model_leg(code: str) -> None:
    assert rt.ends_session(error_event(code))


def test_server_errors_end_the_model_leg() -> None:
    assert rt.ends_session(error_event("internal", error_type="server_error"))


@pytest.mark.parametrize("code", ["response_cancel_not_active", "invalid_value", "unknown"])
def test_errors_about_one_client_event_keep_the_call(code: str) -> None:
    event = error_event(code)
    assert not rt.ends_session(event)
    assert event.event_id == "sb_x_1"


def test_metric_label_is_bounded_whatever_the_server_sends() -> None:
    assert rt.metric_code("invalid_value") == "invalid_value"
    assert rt.metric_code("x" * 200) == "other"
    assert rt.metric_code('bad"label\n') == "other"
