"""``POST /2010-04-01/Accounts/{AccountSid}/Calls.json`` checked as Twilio checks it, sans I/O.

``authenticate`` reads HTTP Basic credentials: the account's SID and auth token, or an API key
(``SK…``) and its secret; anything else is Twilio's 401 with error 20003. ``parse_create_call``
reads the form (repeated keys allowed, as ``StatusCallbackEvent`` is sent) into a ``CreateCall``
or raises ``ApiError`` with the code Twilio answers with. Parameters Twilio does not know are
ignored with warning 20001, as its error dictionary says; parameters it knows but the stand-in
does not model are accepted and listed in ``CreateCall.unmodelled``. Field names are the ones
``twilio`` (the Python package) sends from ``CallList.create``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from services.call_sim.amd import AMD_MODES, AMD_RANGES, AmdMode, AmdSettings
from services.call_sim.recording import (
    CHANNELS,
    RECORDING_EVENTS,
    SOURCE_API,
    TRACKS,
    TRIMS,
    RecordingSpec,
)

__all__ = [
    "CALL_EVENTS",
    "KNOWN_PARAMETERS",
    "SECRET_PARAMETERS",
    "Account",
    "ApiError",
    "CreateCall",
    "ApiWarning",
    "authenticate",
    "parse_create_call",
]

CALL_EVENTS: Final = ("initiated", "ringing", "answered", "completed")
DEFAULT_TIMEOUT_S: Final = 60
MAX_TIMEOUT_S: Final = 600
MAX_TWIML_CHARS: Final = 4000
MAX_SEND_DIGITS: Final = 32
# Every parameter CallList.create sends (twilio/rest/api/v2010/account/call/__init__.py).
KNOWN_PARAMETERS: Final = frozenset(
    "To From Method FallbackUrl FallbackMethod StatusCallback StatusCallbackEvent "
    "StatusCallbackMethod SendDigits Timeout Record RecordingChannels RecordingStatusCallback "
    "RecordingStatusCallbackMethod RecordingConfigurationId SipAuthUsername SipAuthPassword "
    "MachineDetection MachineDetectionTimeout RecordingStatusCallbackEvent Trim CallerId "
    "MachineDetectionSpeechThreshold MachineDetectionSpeechEndThreshold "
    "MachineDetectionSilenceTimeout AsyncAmd AsyncAmdStatusCallback AsyncAmdStatusCallbackMethod "
    "Passports Byoc CallReason CallToken RecordingTrack TimeLimit ClientNotificationUrl Url Twiml "
    "ApplicationSid".split()
)
# Accepted, never used by the stand-in: what they do happens outside a simulated line.
_UNMODELLED: Final = frozenset(
    "RecordingConfigurationId SipAuthUsername SipAuthPassword CallerId Passports Byoc "
    "CallReason CallToken ClientNotificationUrl".split()
)
SECRET_PARAMETERS: Final = frozenset({"SipAuthPassword"})  # never echoed by the stand-in
# Each AMD tuning parameter: its range in amd.AMD_RANGES and its AmdSettings field.
_AMD_NAMES: Final = {
    "MachineDetectionTimeout": ("machineDetectionTimeout", "timeout_s"),
    "MachineDetectionSpeechThreshold": ("machineDetectionSpeechThreshold", "speech_threshold_ms"),
    "MachineDetectionSpeechEndThreshold": (
        "machineDetectionSpeechEndThreshold",
        "speech_end_threshold_ms",
    ),
    "MachineDetectionSilenceTimeout": ("machineDetectionSilenceTimeout", "silence_timeout_ms"),
}
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_APPLICATION_SID = re.compile(r"AP[0-9a-fA-F]{32}")
_DIGITS = re.compile(r"[0-9A-D#*wW]+")
_BOOLEANS: Final = {"true": True, "false": False}


class ApiError(Exception):
    """A refusal: the HTTP status and Twilio's error code, as its JSON error body carries."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }


def _bad(code: int, message: str) -> ApiError:
    return ApiError(400, code, message)


@dataclass(frozen=True, slots=True)
class ApiWarning:
    """What Twilio's debugger would log for an accepted request."""

    code: int | None
    message: str


@dataclass(frozen=True)
class Account:
    """The one account the stand-in serves: its credentials and what it owns."""

    sid: str
    auth_token: str
    api_keys: Mapping[str, str] = field(default_factory=dict)  # SK… → secret
    numbers: frozenset[str] = frozenset()  # the From numbers it may call from
    applications: Mapping[str, str] = field(default_factory=dict)  # AP… → voice URL
    # Geo permissions: the To prefixes it may call (e.g. "+1"); empty: everywhere.
    permitted_prefixes: tuple[str, ...] = ()


def authenticate(authorization: str | None, path_account: str, account: Account) -> str:
    """Who is calling: ``"auth-token"`` or ``"api-key:SK…"``. Raises ``ApiError`` 401/20003."""
    refusal = ApiError(401, 20003, "Authenticate")
    if not authorization or not authorization.startswith("Basic "):
        raise refusal
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise refusal from None
    username, _, password = decoded.partition(":")
    if path_account != account.sid:
        raise refusal
    if username == account.sid and hmac.compare_digest(password, account.auth_token):
        return "auth-token"
    secret = account.api_keys.get(username)
    if secret is not None and hmac.compare_digest(password, secret):
        return f"api-key:{username}"
    raise refusal


@dataclass(frozen=True)
class CreateCall:
    """A create request Twilio would accept, with its defaults filled in."""

    to: str
    from_: str
    url: str | None  # None: the inline ``twiml``
    method: str = "POST"
    twiml: str | None = None
    fallback_url: str | None = None
    fallback_method: str = "POST"
    status_callback: str | None = None
    status_callback_method: str = "POST"
    status_callback_events: tuple[str, ...] = ("completed",)
    timeout_s: int = DEFAULT_TIMEOUT_S
    time_limit_s: int | None = None
    amd: AmdSettings | None = None
    async_amd: bool = False
    async_amd_callback: str | None = None
    async_amd_callback_method: str = "POST"
    recording: RecordingSpec | None = None  # Record=true
    send_digits: str | None = None
    application_sid: str | None = None
    warnings: tuple[ApiWarning, ...] = ()
    unmodelled: tuple[str, ...] = ()


class _Form:
    """The form's values by name, each name read at most once in a way that is checked."""

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self.values: dict[str, list[str]] = {}
        for name, value in pairs:
            self.values.setdefault(name, []).append(value)

    def get(self, name: str) -> str | None:
        values = self.values.get(name)
        return values[-1] if values else None

    def list(self, name: str) -> list[str]:
        # Repeated parameters (as the twilio package sends lists), or space-separated values.
        return [item for value in self.values.get(name, []) for item in value.split()]


def _absolute(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and " " not in value


def _url(form: _Form, name: str, code: int) -> str | None:
    value = form.get(name)
    if value is None or value == "":
        return None
    if not _absolute(value):
        raise _bad(code, f"{name} is not a valid URL: {value}")
    return value


def _method(form: _Form, name: str, code: int) -> str:
    value = form.get(name)
    if value is None or value == "":
        return "POST"
    if value.upper() not in ("GET", "POST"):
        raise _bad(code, f"{name} must be GET or POST, not {value!r}")
    return value.upper()


def _integer(form: _Form, name: str, low: int, high: int, code: int) -> int | None:
    value = form.get(name)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or not low <= int(value) <= high:
        raise _bad(code, f"{name} must be a whole number from {low} to {high}, not {value!r}")
    return int(value)


def _boolean(form: _Form, name: str, code: int) -> bool | None:
    value = form.get(name)
    if value is None:
        return None
    if value.lower() not in _BOOLEANS:
        raise _bad(code, f"{name} must be true or false, not {value!r}")
    return _BOOLEANS[value.lower()]


def _choice(form: _Form, name: str, allowed: Sequence[str], default: str, code: int) -> str:
    value = form.get(name)
    if value is None:
        return default
    if value not in allowed:
        raise _bad(code, f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def _events(form: _Form, name: str, allowed: Sequence[str], code: int) -> tuple[str, ...]:
    events = form.list(name)
    wrong = [event for event in events if event not in allowed]
    if wrong:
        raise _bad(code, f"{name} {wrong[0]!r} is not one of {', '.join(allowed)}")
    return tuple(dict.fromkeys(events))


def _numbers(form: _Form, account: Account) -> tuple[str, str]:
    to, from_ = form.get("To"), form.get("From")
    if not to:
        raise _bad(21201, "No 'To' number is specified")
    if not from_:
        raise _bad(21213, "No 'From' number is specified")
    if not _E164.fullmatch(to):
        # SIP and Client addresses are valid To values for Twilio; the stand-in only dials
        # phone numbers, so they are refused alike.
        raise _bad(21211, f"The 'To' number {to} is not a valid phone number.")
    if not _E164.fullmatch(from_):
        raise _bad(21212, f"The 'From' number {from_} is not a valid phone number.")
    if from_ not in account.numbers:
        raise _bad(
            21210,
            f"The source phone number provided, {from_}, is not yet verified for your account. "
            "You may only make calls from phone numbers that you've verified or purchased "
            "from Twilio.",
        )
    if account.permitted_prefixes and not to.startswith(account.permitted_prefixes):
        raise _bad(
            21215,
            f"Account not authorized to call {to}. Perhaps you need to enable some "
            "international permissions.",
        )
    return to, from_


def _instructions(form: _Form, account: Account) -> tuple[str | None, str | None, str | None]:
    """(url, twiml, application_sid): ApplicationSid wins, then Url, then Twiml."""
    application_sid = form.get("ApplicationSid") or None
    url = _url(form, "Url", 21205)
    twiml = form.get("Twiml") or None
    if application_sid is not None:
        voice_url = account.applications.get(application_sid)
        if not _APPLICATION_SID.fullmatch(application_sid) or voice_url is None:
            raise _bad(21218, f"ApplicationSid {application_sid} is not valid for this account")
        return voice_url, None, application_sid
    if url is not None:
        return url, None, None  # Twiml is ignored when Url is given
    if twiml is None:
        raise _bad(21200, "Either a 'Url', 'Twiml' or 'ApplicationSid' parameter is required")
    if len(twiml) > MAX_TWIML_CHARS:
        raise _bad(32018, f"Twiml size exceeded maximum allowed value of {MAX_TWIML_CHARS}")
    return None, twiml, None


def _amd(form: _Form) -> tuple[AmdSettings | None, bool]:
    """The AMD settings (None: off) and whether it runs asynchronously. 21234 for bad values."""
    mode = form.get("MachineDetection")
    tuning: dict[str, int] = {}
    for name, (key, setting) in _AMD_NAMES.items():
        low, high, _ = AMD_RANGES[key]
        value = _integer(form, name, low, high, 21234)
        if value is not None:
            tuning[setting] = value
    async_amd = _boolean(form, "AsyncAmd", 21234) or False
    if mode is None or mode == "":
        return None, async_amd
    if mode not in AMD_MODES:
        raise _bad(21234, f"MachineDetection must be one of {', '.join(AMD_MODES)}, not {mode!r}")
    amd_mode: AmdMode = "Enable" if mode == "Enable" else "DetectMessageEnd"
    return AmdSettings(amd_mode, **tuning), async_amd


def _recording(form: _Form) -> RecordingSpec | None:
    channels = _choice(form, "RecordingChannels", CHANNELS, "mono", 21200)
    track = _choice(form, "RecordingTrack", TRACKS, "both", 21200)
    trim = _choice(form, "Trim", TRIMS, "trim-silence", 21200)
    callback = _url(form, "RecordingStatusCallback", 21200)
    method = _method(form, "RecordingStatusCallbackMethod", 21200)
    events = _events(form, "RecordingStatusCallbackEvent", RECORDING_EVENTS, 21200)
    if not _boolean(form, "Record", 21200):
        return None
    return RecordingSpec(
        source=SOURCE_API,
        channels=channels,
        track=track,
        trim=trim,
        status_callback=callback,
        status_callback_method=method,
        status_callback_events=events or ("completed",),
        configuration_id=form.get("RecordingConfigurationId"),
    )


def parse_create_call(pairs: Sequence[tuple[str, str]], account: Account) -> CreateCall:
    """The request ``pairs`` (the form, in order) as Twilio would take it; raises ApiError."""
    form = _Form(pairs)
    warnings: list[ApiWarning] = []
    unknown = sorted(name for name in form.values if name not in KNOWN_PARAMETERS)
    if unknown:
        warnings.append(ApiWarning(20001, f"Unknown parameters, ignored: {', '.join(unknown)}"))
    to, from_ = _numbers(form, account)
    url, twiml, application_sid = _instructions(form, account)
    method = _method(form, "Method", 21209)
    fallback_url = _url(form, "FallbackUrl", 21205)
    fallback_method = _method(form, "FallbackMethod", 21200)
    status_callback = _url(form, "StatusCallback", 21200)
    status_callback_method = _method(form, "StatusCallbackMethod", 21200)
    events = _events(form, "StatusCallbackEvent", CALL_EVENTS, 21626) or ("completed",)
    timeout = _integer(form, "Timeout", 1, MAX_TIMEOUT_S, 21208)
    time_limit = _integer(form, "TimeLimit", 1, 24 * 3600, 21200)
    amd, async_amd = _amd(form)
    async_callback = _url(form, "AsyncAmdStatusCallback", 21200)
    async_method = _method(form, "AsyncAmdStatusCallbackMethod", 21200)
    send_digits = form.get("SendDigits") or None
    if send_digits is not None and (
        len(send_digits) > MAX_SEND_DIGITS or not _DIGITS.fullmatch(send_digits)
    ):
        raise _bad(21200, f"SendDigits must be up to 32 of 0-9 A-D # * w W, not {send_digits!r}")
    recording = _recording(form)
    if application_sid is not None:
        # The application's own settings replace these (the twilio package's docstrings).
        status_callback, method, fallback_url = None, "POST", None
    if amd is not None and send_digits is not None:
        warnings.append(ApiWarning(None, "MachineDetection is ignored when SendDigits is given"))
        amd = None
    if amd is not None and async_amd and async_callback is None:
        warnings.append(ApiWarning(21262, "No AMD status callback URL provided"))
    if amd is None and async_amd:
        warnings.append(ApiWarning(None, "AsyncAmd without MachineDetection: no detection runs"))
    return CreateCall(
        to=to,
        from_=from_,
        url=url,
        method=method,
        twiml=twiml,
        fallback_url=fallback_url,
        fallback_method=fallback_method,
        status_callback=status_callback,
        status_callback_method=status_callback_method,
        status_callback_events=events,
        timeout_s=timeout if timeout is not None else DEFAULT_TIMEOUT_S,
        time_limit_s=time_limit,
        amd=amd,
        async_amd=async_amd and amd is not None,
        async_amd_callback=async_callback,
        async_amd_callback_method=async_method,
        recording=recording,
        send_digits=send_digits,
        application_sid=application_sid,
        warnings=tuple(warnings),
        unmodelled=tuple(sorted(name for name in form.values if name in _UNMODELLED)),
    )
