"""X-Twilio-Signature: our computation agrees with twilio-python's RequestValidator."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from services.edge.signature import compute_signature, is_valid_signature

TOKEN = "12345"
OTHER_TOKEN = "abcdef0123456789abcdef0123456789"

WEBHOOK_PARAMS = [
    ("CallSid", "CA" + "a" * 32),
    ("AccountSid", "AC" + "b" * 32),
    ("From", "+16175551212"),
    ("To", "+18005551212"),
    ("CallStatus", "ringing"),
    ("ApiVersion", "2010-04-01"),
    ("Direction", "inbound"),
    ("CallerName", 'Zoë & "Co" <x>'),
    ("FromCity", ""),
]

URLS = [
    "https://edge.example.com/twilio/voice",
    "https://edge.example.com:443/twilio/voice",
    "https://edge.example.com:8443/twilio/voice",
    "http://localhost:8080/twilio/voice",
    "http://edge.example.com/twilio/voice",
    "https://edge.example.com/twilio/voice?tenant=acme&x=1",
    "https://example.com/switchboard/twilio/voice/resume",
    "wss://edge.example.com/twilio/media",
]


class MultiParams:
    """Form parameters with repeated names, in the MultiDict shape RequestValidator reads."""

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self.pairs = list(pairs)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(name for name, _ in self.pairs)

    def __bool__(self) -> bool:
        return bool(self.pairs)

    def getall(self, name: str) -> list[str]:
        return [value for key, value in self.pairs if key == name]


def twilio_signature(token: str, url: str, pairs: Sequence[tuple[str, str]]) -> str:
    signature: str = RequestValidator(token).compute_signature(url, MultiParams(pairs))
    return signature


def twilio_accepts(token: str, url: str, pairs: Sequence[tuple[str, str]], sig: str) -> bool:
    return bool(RequestValidator(token).validate(url, MultiParams(pairs), sig))


def test_documented_test_vector() -> None:
    params = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+12349013030"),
        ("Digits", "1234"),
        ("From", "+12349013030"),
        ("To", "+18005551212"),
    ]
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert compute_signature("12345", url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    assert is_valid_signature(["12345"], url, params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")


@pytest.mark.parametrize("url", URLS)
def test_compute_signature_matches_twilio(url: str) -> None:
    assert compute_signature(TOKEN, url, WEBHOOK_PARAMS) == twilio_signature(
        TOKEN, url, WEBHOOK_PARAMS
    )


@pytest.mark.parametrize("url", URLS)
def test_twilio_signed_request_is_accepted(url: str) -> None:
    sig = twilio_signature(TOKEN, url, WEBHOOK_PARAMS)
    assert twilio_accepts(TOKEN, url, WEBHOOK_PARAMS, sig)
    assert is_valid_signature([TOKEN], url, WEBHOOK_PARAMS, sig)


def test_parameter_order_does_not_matter() -> None:
    url = URLS[0]
    sig = twilio_signature(TOKEN, url, WEBHOOK_PARAMS)
    assert is_valid_signature([TOKEN], url, list(reversed(WEBHOOK_PARAMS)), sig)


def test_names_sort_case_sensitively() -> None:
    pairs = [("a", "1"), ("B", "2"), ("_", "3"), ("Z", "4")]
    assert compute_signature(TOKEN, URLS[0], pairs) == twilio_signature(TOKEN, URLS[0], pairs)


def test_repeated_names_contribute_each_value_sorted() -> None:
    pairs = [("Tag", "b"), ("Tag", "a"), ("Tag", "b"), ("One", "1")]
    sig = twilio_signature(TOKEN, URLS[0], pairs)
    assert compute_signature(TOKEN, URLS[0], pairs) == sig
    assert is_valid_signature([TOKEN], URLS[0], pairs, sig)
    assert not is_valid_signature([TOKEN], URLS[0], [("Tag", "a"), ("One", "1")], sig)


def test_stream_upgrade_wss_url_with_no_params() -> None:
    url = "wss://edge.example.com/twilio/media"
    sig = twilio_signature(TOKEN, url, [])
    assert compute_signature(TOKEN, url) == sig
    assert is_valid_signature([TOKEN], url, [], sig)
    assert twilio_accepts(TOKEN, url, [], sig)
    # What a naive check behind TLS termination would compute instead: not the same.
    assert not is_valid_signature([TOKEN], "https://edge.example.com/twilio/media", [], sig)


@pytest.mark.parametrize(
    ("signed", "checked"),
    [
        ("https://edge.example.com:443/twilio/voice", "https://edge.example.com/twilio/voice"),
        ("https://edge.example.com/twilio/voice", "https://edge.example.com:443/twilio/voice"),
        ("http://edge.example.com:80/twilio/voice", "http://edge.example.com/twilio/voice"),
    ],
)
def test_port_added_or_removed_like_twilio(signed: str, checked: str) -> None:
    sig = twilio_signature(TOKEN, signed, WEBHOOK_PARAMS)
    assert twilio_accepts(TOKEN, checked, WEBHOOK_PARAMS, sig)
    assert is_valid_signature([TOKEN], checked, WEBHOOK_PARAMS, sig)


def test_a_non_default_port_is_not_dropped() -> None:
    signed, checked = "https://edge.example.com:8443/x", "https://edge.example.com/x"
    sig = twilio_signature(TOKEN, signed, WEBHOOK_PARAMS)
    assert not twilio_accepts(TOKEN, checked, WEBHOOK_PARAMS, sig)
    assert not is_valid_signature([TOKEN], checked, WEBHOOK_PARAMS, sig)


def test_wss_default_port_is_443() -> None:
    # RequestValidator adds :80 to any non-https URL; for wss the default port is 443.
    sig = compute_signature(TOKEN, "wss://edge.example.com:443/twilio/media")
    assert is_valid_signature([TOKEN], "wss://edge.example.com/twilio/media", [], sig)


@pytest.mark.parametrize("url", URLS)
def test_wrong_token_is_rejected(url: str) -> None:
    sig = twilio_signature(OTHER_TOKEN, url, WEBHOOK_PARAMS)
    assert not twilio_accepts(TOKEN, url, WEBHOOK_PARAMS, sig)
    assert not is_valid_signature([TOKEN], url, WEBHOOK_PARAMS, sig)


@pytest.mark.parametrize(
    "tampered",
    [
        [*WEBHOOK_PARAMS[:2], ("From", "+19995550000"), *WEBHOOK_PARAMS[3:]],  # changed value
        WEBHOOK_PARAMS[1:],  # dropped parameter
        [*WEBHOOK_PARAMS, ("Digits", "1")],  # added parameter
        [(name.lower(), value) for name, value in WEBHOOK_PARAMS],  # renamed
        [("CallSidAccountSid", "")],  # same concatenation boundary shift is still different
    ],
)
def test_tampered_params_are_rejected(tampered: list[tuple[str, str]]) -> None:
    url = URLS[0]
    sig = twilio_signature(TOKEN, url, WEBHOOK_PARAMS)
    assert not twilio_accepts(TOKEN, url, tampered, sig)
    assert not is_valid_signature([TOKEN], url, tampered, sig)


@pytest.mark.parametrize(
    "other_url",
    [
        "https://edge.example.com/twilio/voice/",  # trailing slash
        "https://edge.example.com/twilio/voice?x=1",  # query added
        "https://evil.example.com/twilio/voice",  # other host
        "http://edge.example.com/twilio/voice",  # other scheme
        "https://edge.example.com/twilio/voice/resume",  # other path
    ],
)
def test_other_url_is_rejected(other_url: str) -> None:
    sig = twilio_signature(TOKEN, URLS[0], WEBHOOK_PARAMS)
    assert not twilio_accepts(TOKEN, other_url, WEBHOOK_PARAMS, sig)
    assert not is_valid_signature([TOKEN], other_url, WEBHOOK_PARAMS, sig)


@pytest.mark.parametrize("sig", [None, "", "not-a-signature", "0/KCTR6DLpKmkAf8muzZqo1nDgQ"])
def test_missing_or_garbage_signature_is_rejected(sig: str | None) -> None:
    assert not is_valid_signature([TOKEN], URLS[0], WEBHOOK_PARAMS, sig)


def test_several_configured_tokens_accept_either() -> None:
    url = URLS[0]
    for token in (TOKEN, OTHER_TOKEN):
        sig = twilio_signature(token, url, WEBHOOK_PARAMS)
        assert is_valid_signature([TOKEN, OTHER_TOKEN], url, WEBHOOK_PARAMS, sig)
        assert is_valid_signature([OTHER_TOKEN, TOKEN], url, WEBHOOK_PARAMS, sig)
    third = twilio_signature("third-token", url, WEBHOOK_PARAMS)
    assert not is_valid_signature([TOKEN, OTHER_TOKEN], url, WEBHOOK_PARAMS, third)


def test_no_configured_token_accepts_nothing() -> None:
    sig = twilio_signature(TOKEN, URLS[0], WEBHOOK_PARAMS)
    assert not is_valid_signature([], URLS[0], WEBHOOK_PARAMS, sig)


_names = st.text(min_size=1, max_size=10)
_pairs = st.lists(st.tuples(_names, st.text(max_size=20)), max_size=8)


@settings(max_examples=200, deadline=None)
@given(
    token=st.text(min_size=1, max_size=40),
    url=st.sampled_from(URLS),
    pairs=_pairs,
    other=_pairs,
)
def test_agrees_with_twilio_on_random_requests(
    token: str, url: str, pairs: list[tuple[str, str]], other: list[tuple[str, str]]
) -> None:
    sig = twilio_signature(token, url, pairs)
    assert compute_signature(token, url, pairs) == sig
    assert is_valid_signature([token], url, pairs, sig)
    # Whatever other request we check the signature against, both verdicts agree.
    assert is_valid_signature([token], url, other, sig) == twilio_accepts(token, url, other, sig)
