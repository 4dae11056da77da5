"""The Twilio API stand-in's front door: credentials and the create-call form, refused with
Twilio's codes, pure functions first, then over HTTP."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import pytest

from services.call_sim.amd import AmdSettings
from services.call_sim.api_requests import (
    KNOWN_PARAMETERS,
    Account,
    ApiError,
    authenticate,
    parse_create_call,
)
from services.call_sim.twilio_api import ApiConfig, TwilioApi, serve_api

pytestmark = pytest.mark.anyio

SID = "AC" + "a1" * 16
TOKEN = "auth-token-of-the-account"
KEY, KEY_SECRET = "SK" + "b2" * 16, "secret-of-the-key"
APP = "AP" + "c3" * 16
OWNED = "+15005550006"
ACCOUNT = Account(
    SID,
    TOKEN,
    api_keys={KEY: KEY_SECRET},
    numbers=frozenset({OWNED}),
    applications={APP: "https://app.example.com/voice"},
)
BASE = [("To", "+14155550100"), ("From", OWNED), ("Url", "https://app.example.com/voice")]


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def refusal(pairs: list[tuple[str, str]], account: Account = ACCOUNT) -> tuple[int, int]:
    with pytest.raises(ApiError) as caught:
        parse_create_call(pairs, account)
    return caught.value.status, caught.value.code


def without(name: str) -> list[tuple[str, str]]:
    return [(key, value) for key, value in BASE if key != name]


# --- credentials ------------------------------------------------------------------------


def test_the_auth_token_and_an_api_key_authenticate() -> None:
    assert authenticate(basic(SID, TOKEN), SID, ACCOUNT) == "auth-token"
    assert authenticate(basic(KEY, KEY_SECRET), SID, ACCOUNT) == f"api-key:{KEY}"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer x",
        "Basic !!!",
        basic(SID, "wrong"),
        basic(KEY, TOKEN),  # the key with the account's token
        basic(SID, KEY_SECRET),  # the account with the key's secret
        basic("SK" + "00" * 16, KEY_SECRET),
        basic(SID, ""),
    ],
)
def test_anything_else_is_401_with_20003(header: str | None) -> None:
    with pytest.raises(ApiError) as caught:
        authenticate(header, SID, ACCOUNT)
    assert (caught.value.status, caught.value.code) == (401, 20003)
    assert caught.value.body() == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }


def test_good_credentials_for_another_account_are_refused() -> None:
    with pytest.raises(ApiError) as caught:
        authenticate(basic(SID, TOKEN), "AC" + "ff" * 16, ACCOUNT)
    assert caught.value.code == 20003


# --- the form -----------------------------------------------------------------------------


def test_a_minimal_request_gets_twilio_defaults() -> None:
    create = parse_create_call(BASE, ACCOUNT)
    assert (create.to, create.from_, create.url, create.method) == (
        "+14155550100",
        OWNED,
        "https://app.example.com/voice",
        "POST",
    )
    assert create.status_callback_events == ("completed",)
    assert create.timeout_s == 60 and create.time_limit_s is None
    assert create.amd is None and create.recording is None and create.warnings == ()


@pytest.mark.parametrize(
    ("pairs", "code"),
    [
        (without("To"), 21201),
        (without("From"), 21213),
        ([*without("To"), ("To", "4155550100")], 21211),
        ([*without("To"), ("To", "sip:bob@example.com")], 21211),
        ([*without("From"), ("From", "Switchboard")], 21212),
        ([*without("From"), ("From", "+15005550099")], 21210),
        (without("Url"), 21200),
        ([*without("Url"), ("Url", "/voice")], 21205),
        ([*without("Url"), ("Url", "ftp://app.example.com/voice")], 21205),
        ([*BASE, ("Method", "PUT")], 21209),
        ([*BASE, ("FallbackUrl", "app.example.com")], 21205),
        ([*BASE, ("StatusCallback", "not a url")], 21200),
        ([*BASE, ("StatusCallbackMethod", "DELETE")], 21200),
        ([*BASE, ("StatusCallbackEvent", "initiated"), ("StatusCallbackEvent", "busy")], 21626),
        ([*BASE, ("Timeout", "0")], 21208),
        ([*BASE, ("Timeout", "601")], 21208),
        ([*BASE, ("Timeout", "ten")], 21208),
        ([*BASE, ("MachineDetection", "enable")], 21234),
        ([*BASE, ("MachineDetection", "Enable"), ("MachineDetectionTimeout", "2")], 21234),
        ([*BASE, ("MachineDetectionSpeechThreshold", "999")], 21234),
        ([*BASE, ("MachineDetectionSpeechEndThreshold", "5001")], 21234),
        ([*BASE, ("MachineDetectionSilenceTimeout", "1999")], 21234),
        ([*BASE, ("AsyncAmd", "yes")], 21234),
        ([*BASE, ("Record", "1")], 21200),
        ([*BASE, ("RecordingChannels", "stereo")], 21200),
        ([*BASE, ("RecordingTrack", "left")], 21200),
        ([*BASE, ("Trim", "trim")], 21200),
        ([*BASE, ("RecordingStatusCallbackEvent", "done")], 21200),
        ([*BASE, ("SendDigits", "1234x")], 21200),
        ([*BASE, ("TimeLimit", "-1")], 21200),
        ([*without("Url"), ("ApplicationSid", "AP" + "00" * 16)], 21218),
        ([*without("Url"), ("Twiml", "<Response>" + " " * 4000 + "</Response>")], 32018),
    ],
)
def test_refusals_carry_twilios_code(pairs: list[tuple[str, str]], code: int) -> None:
    assert refusal(pairs) == (400, code)


def test_geo_permissions_refuse_other_countries() -> None:
    account = Account(SID, TOKEN, numbers=frozenset({OWNED}), permitted_prefixes=("+1",))
    assert parse_create_call(BASE, account).to == "+14155550100"
    assert refusal([*without("To"), ("To", "+442071838750")], account) == (400, 21215)


def test_unknown_parameters_are_ignored_with_warning_20001() -> None:
    create = parse_create_call([*BASE, ("StatusCallbackEvents", "ringing")], ACCOUNT)
    (warning,) = create.warnings
    assert warning.code == 20001 and "StatusCallbackEvents" in warning.message
    assert create.status_callback_events == ("completed",)


def test_every_parameter_the_twilio_package_sends_is_known() -> None:
    import inspect

    from twilio.rest.api.v2010.account.call import CallList

    source = inspect.getsource(CallList._create_async)
    sent = {name for name in KNOWN_PARAMETERS if f'"{name}":' in source}
    assert sent == KNOWN_PARAMETERS


def test_events_come_repeated_or_space_separated() -> None:
    repeated = parse_create_call(
        [*BASE, ("StatusCallbackEvent", "initiated"), ("StatusCallbackEvent", "answered")],
        ACCOUNT,
    )
    spaced = parse_create_call([*BASE, ("StatusCallbackEvent", "initiated answered")], ACCOUNT)
    assert (
        repeated.status_callback_events
        == spaced.status_callback_events
        == (
            "initiated",
            "answered",
        )
    )


def test_amd_and_recording_settings() -> None:
    create = parse_create_call(
        [
            *BASE,
            ("MachineDetection", "DetectMessageEnd"),
            ("MachineDetectionTimeout", "10"),
            ("MachineDetectionSpeechEndThreshold", "800"),
            ("AsyncAmd", "true"),
            ("Record", "true"),
            ("RecordingChannels", "dual"),
            ("RecordingStatusCallback", "https://app.example.com/rec"),
            ("RecordingStatusCallbackEvent", "in-progress completed"),
        ],
        ACCOUNT,
    )
    assert create.amd == AmdSettings("DetectMessageEnd", timeout_s=10, speech_end_threshold_ms=800)
    assert create.async_amd and create.async_amd_callback is None
    assert [warning.code for warning in create.warnings] == [21262]  # nowhere to send it
    assert create.recording is not None
    assert (create.recording.source, create.recording.channels, create.recording.track) == (
        "OutboundAPI",
        "dual",
        "both",
    )
    assert create.recording.status_callback_events == ("in-progress", "completed")


def test_send_digits_turns_amd_off() -> None:
    create = parse_create_call(
        [*BASE, ("MachineDetection", "Enable"), ("SendDigits", "W1234#")], ACCOUNT
    )
    assert create.amd is None and create.send_digits == "W1234#"


def test_precedence_application_then_url_then_twiml() -> None:
    twiml = "<Response><Hangup/></Response>"
    with_url = parse_create_call([*BASE, ("Twiml", twiml)], ACCOUNT)
    assert (with_url.url, with_url.twiml) == ("https://app.example.com/voice", None)
    inline = parse_create_call([*without("Url"), ("Twiml", twiml)], ACCOUNT)
    assert (inline.url, inline.twiml) == (None, twiml)
    app = parse_create_call(
        [*BASE, ("ApplicationSid", APP), ("StatusCallback", "https://app.example.com/s")],
        ACCOUNT,
    )
    assert (app.url, app.application_sid, app.status_callback) == (
        "https://app.example.com/voice",
        APP,
        None,  # the application's own settings rule
    )


def test_known_but_unmodelled_parameters_are_listed() -> None:
    create = parse_create_call([*BASE, ("CallerId", OWNED), ("SipAuthPassword", "x")], ACCOUNT)
    assert create.unmodelled == ("CallerId", "SipAuthPassword") and create.warnings == ()


# --- over HTTP ----------------------------------------------------------------------------


@pytest.fixture
async def api() -> AsyncIterator[TwilioApi]:
    async with serve_api(ApiConfig(ACCOUNT, caller_audio=b"")) as served:
        yield served


async def test_http_refusals_are_twilio_json(api: TwilioApi) -> None:
    calls = f"{api.url}/2010-04-01/Accounts/{SID}/Calls.json"
    async with httpx.AsyncClient() as http:
        unauthenticated = await http.post(calls, data=dict(BASE))
        wrong = await http.post(calls, data=dict(BASE), auth=(KEY, "nope"))
        bad = await http.post(calls, data={"From": OWNED, "Url": BASE[2][1]}, auth=(SID, TOKEN))
        missing = await http.get(f"{api.url}/2010-04-01/Accounts/{SID}/Queues.json")
        listing = await http.get(calls, auth=(SID, TOKEN))  # only POST: no listing here
        unknown = [
            await http.get(f"{api.url}/2010-04-01/Accounts/{SID}/Calls/CA00.json", auth=auth)
            for auth in ((SID, TOKEN), (SID, "wrong"))
        ]
        no_recording = await http.get(f"{api.url}/2010-04-01/Accounts/{SID}/Recordings/RE0.wav")
        no_record = await http.get(f"{api.url}/_sim/calls/CA00")
        records = await http.get(f"{api.url}/_sim/calls")
    for response in (unauthenticated, wrong):
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Basic realm="Twilio API"'
        assert response.json()["code"] == 20003
    assert bad.status_code == 400
    assert bad.json() == {
        "code": 21201,
        "message": "No 'To' number is specified",
        "more_info": "https://www.twilio.com/docs/errors/21201",
        "status": 400,
    }
    assert (missing.status_code, missing.json()["code"]) == (404, 20404)
    assert (listing.status_code, listing.json()["code"]) == (405, 20004)
    assert [(r.status_code, r.json()["code"]) for r in unknown] == [(404, 20404), (401, 20003)]
    assert (no_recording.status_code, no_record.status_code) == (404, 404)
    assert records.json() == [] and api.calls == {}
