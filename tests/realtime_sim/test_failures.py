"""Failures real sessions have, on request, driven through SimSession (no sockets)."""

from __future__ import annotations

import json

import pytest

from services.realtime_sim.__main__ import build_parser, config_from_args
from services.realtime_sim.failures import (
    Close,
    DropHow,
    FailurePlan,
    Failures,
    max_duration_close,
)
from services.realtime_worker import openai_protocol as rt
from tests.support.realtime_sim import CALLER, Driver, of_type, pcmu_update, quiet, types


def test_plan_server_error_and_drop_fire_once_at_their_thresholds() -> None:
    plan = FailurePlan(Failures(drop_after_ms=500, server_error_after_ms=200), serial=1)
    assert not plan.server_error_due(199) and plan.drop_due(499) is None
    assert plan.server_error_due(200) and not plan.server_error_due(300)
    assert plan.drop_due(520) is DropHow.ABRUPT and plan.drop_due(600) is None


@pytest.mark.parametrize(
    ("sessions", "serial", "drops"), [(1, 1, True), (1, 2, False), (2, 2, True), (0, 99, True)]
)
def test_drop_sessions_picks_the_first_k(sessions: int, serial: int, drops: bool) -> None:
    plan = FailurePlan(Failures(drop_after_ms=0, drop_sessions=sessions), serial)
    assert (plan.drop_due(0) is not None) is drops


def test_max_duration_reason_names_the_real_length() -> None:
    assert max_duration_close(3600) == Close(
        1001, "Your session hit the maximum duration of 60 minutes."
    )
    assert max_duration_close(60).reason.endswith("of 1 minute.")
    assert max_duration_close(90).reason.endswith("of 90 seconds.")
    assert max_duration_close(0.5).reason.endswith("of 0.5 seconds.")


def test_session_created_expires_at_the_cap() -> None:
    d = Driver(failures=Failures(session_max_s=120))
    (created,) = d.events
    assert created["session"]["expires_at"] - 120 == pytest.approx(
        Driver().events[0]["session"]["expires_at"] - 3600, abs=2
    )


@pytest.mark.parametrize("how", list(DropHow))
def test_a_drop_is_asked_for_after_the_audio_threshold(how: DropHow) -> None:
    d = Driver(failures=Failures(drop_after_ms=200, drop_how=how))
    d.send(pcmu_update())
    d.speak(quiet(180))
    assert d.session.close_due() is None
    last = d.speak(quiet(20))
    close = d.session.close_due()
    assert close is not None and close.dropped is how
    assert close.code == {"abrupt": None, "1011": 1011, "1001": 1001, "server-error": 1011}[how]
    if how is DropHow.SERVER_ERROR:
        (error,) = of_type(last, "error")
        assert error["error"]["type"] == "server_error" and error["error"]["code"] is None
        assert d.session.session_id in error["error"]["message"]
    else:
        assert not of_type(last, "error")
    assert d.session.close_due() is None
    assert d.speak(CALLER) == [] and d.steps() == []  # a dropping session is silent


def test_a_second_session_does_not_drop_by_default() -> None:
    d = Driver(serial=2, failures=Failures(drop_after_ms=0))
    d.send(pcmu_update())
    d.speak(CALLER)
    assert d.session.close_due() is None


def test_server_error_after_ms_is_sent_once_and_the_session_goes_on() -> None:
    d = Driver(failures=Failures(server_error_after_ms=400))
    d.send(pcmu_update())
    heard = d.speak(CALLER)  # 1.9 s of audio
    (error,) = of_type(heard, "error")
    assert error["error"]["type"] == "server_error"
    assert error["error"]["event_id"] is None
    assert of_type(d.steps(), "response.done")[0]["response"]["status"] == "completed"
    assert not of_type(d.speak(CALLER), "error")
    assert d.session.close_due() is None
    d.record.sent(error)  # as the server's writer notes it: the type stands in for the code
    assert d.record.errors[0].startswith("server_error: The server had an error")


def test_every_nth_response_fails() -> None:
    d = Driver(failures=Failures(fail_responses=2))
    d.send(pcmu_update())
    d.speak(CALLER)
    assert of_type(d.steps(), "response.done")[0]["response"]["status"] == "completed"
    second = d.speak(CALLER)
    assert types(second)[-2:] == ["response.created", "response.done"]
    failed = second[-1]["response"]
    assert failed["status"] == "failed" and failed["output"] == []
    assert failed["status_details"]["type"] == "failed"
    assert failed["status_details"]["error"]["type"] == "server_error"
    assert failed["id"] == second[-2]["response"]["id"]
    assert not d.session.reply_pending
    # The session goes on: the next response is fine, the fourth fails again.
    started = d.send(rt.response_create("evt_3"))
    assert types(started)[0] == "response.created"
    assert of_type(d.steps(), "response.done")[0]["response"]["status"] == "completed"
    assert of_type(d.send(rt.response_create("evt_4")), "response.done")[0]["response"][
        "status"
    ] == ("failed")


def test_a_failed_function_call_response_calls_nothing() -> None:
    update = json.loads(pcmu_update())
    update["session"]["tools"] = [rt.END_CALL_TOOL]
    d = Driver(end_call_after=1, failures=Failures(fail_responses=1))
    d.send(json.dumps(update))
    (done,) = of_type(d.speak(CALLER), "response.done")
    assert done["response"]["status"] == "failed"
    assert d.record.function_calls == []


def test_transcription_fails_reports_failed_instead_of_completed() -> None:
    d = Driver(failures=Failures(transcription_fails=True))
    d.send(pcmu_update())
    heard = d.speak(CALLER)
    assert not of_type(heard, "conversation.item.input_audio_transcription.completed")
    (failed,) = of_type(heard, "conversation.item.input_audio_transcription.failed")
    committed = of_type(heard, "input_audio_buffer.committed")[0]
    assert failed["item_id"] == committed["item_id"]
    assert failed["error"]["type"] == "server_error"
    assert committed["item_id"] in failed["error"]["message"]


def test_no_transcription_event_at_all_without_transcription() -> None:
    d = Driver(failures=Failures(transcription_fails=True))
    d.send(pcmu_update(transcription=None))
    assert not [t for t in types(d.speak(CALLER)) if "transcription" in t]


def test_rate_limits_follow_each_response_created_and_go_down() -> None:
    d = Driver(failures=Failures(rate_limits=True))
    d.send(pcmu_update())
    limits = []
    for _ in range(3):
        heard = d.speak(CALLER)
        index = types(heard).index("response.created")
        assert heard[index + 1]["type"] == "rate_limits.updated"
        limits.append({r["name"]: r for r in heard[index + 1]["rate_limits"]})
        d.steps()
    for name in ("requests", "tokens"):
        remaining = [limit[name]["remaining"] for limit in limits]
        assert remaining == sorted(remaining, reverse=True) and len(set(remaining)) == 3
        assert all(limit[name]["limit"] > limit[name]["remaining"] for limit in limits)


def test_no_rate_limits_unless_asked() -> None:
    d = Driver()
    d.send(pcmu_update())
    assert "rate_limits.updated" not in types(d.speak(CALLER))


def test_cli_flags_reach_the_config() -> None:
    args = build_parser().parse_args(
        [
            "--drop-after-ms",
            "1500",
            "--drop-how",
            "server-error",
            "--drop-sessions",
            "0",
            "--session-max-s",
            "90",
            "--server-error-after-ms",
            "700",
            "--fail-responses",
            "3",
            "--transcription-fails",
            "--rate-limits",
            "--late-transcripts",
            "--cancel-delay-ms",
            "50",
        ]
    )
    behaviour = config_from_args(args).behaviour
    assert behaviour.failures == Failures(
        drop_after_ms=1500,
        drop_how=DropHow.SERVER_ERROR,
        drop_sessions=0,
        session_max_s=90,
        server_error_after_ms=700,
        fail_responses=3,
        transcription_fails=True,
        rate_limits=True,
    )
    assert behaviour.late_transcripts and behaviour.cancel_delay_ms == 50


def test_defaults_are_off_except_the_hour_cap() -> None:
    behaviour = config_from_args(build_parser().parse_args([])).behaviour
    assert behaviour.failures == Failures()
    assert behaviour.failures.drop_after_ms is None and behaviour.failures.drop_sessions == 1
    assert behaviour.failures.session_max_s == 3600
    assert not behaviour.late_transcripts and behaviour.cancel_delay_ms == 20


@pytest.mark.parametrize(
    "flags",
    [
        ["--drop-after-ms", "-1"],
        ["--drop-sessions", "-1"],
        ["--session-max-s", "0"],
        ["--fail-responses", "-2"],
        ["--cancel-delay-ms", "-1"],
        ["--drop-how", "1000"],
    ],
)
def test_bad_values_are_usage_errors(flags: list[str]) -> None:
    from services.realtime_sim.__main__ import main

    with pytest.raises(SystemExit) as exited:
        main(flags)
    assert exited.value.code == 2
