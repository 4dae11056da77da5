"""X-Twilio-Signature: our computation agrees with twilio-python's RequestValidator, in both
signing modes (auth token, HMAC-SHA1; shared key, the algorithm the settings header names)."""

from __future__ import annotations

import base64
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from services.edge.signature import (
    SigningKeys,
    Verdict,
    check_signature,
    compute_signature,
    is_valid_signature,
    parse_signature_settings,
)

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


# --- the signing mode, from X-Twilio-Webhooks-Signature-Settings --------------------------

SHARED = "shared-key-secret-abcdefghijklmnop"
OLD_SHARED = "shared-key-secret-previous-000000"
KEY_ID = "webhooks_sharedkey_01J9Z6Q8W5X4V3T2S1R0P9N8M7"
BOTH = SigningKeys(auth_tokens=(TOKEN,), shared_keys=(SHARED,))


def settings_header(algorithm: str = "HMAC_SHA256") -> str:
    return f"key={KEY_ID},algorithm={algorithm}"


def shared_signature(secret: str, url: str, algorithm: str = "HMAC_SHA256") -> str:
    """What Twilio sends when a Webhook Rule signs with a SharedKey: twilio-python's own."""
    signature: str = RequestValidator(secret).compute_signature(
        url, MultiParams(WEBHOOK_PARAMS), algorithm
    )
    return signature


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("algorithm", ["HMAC_SHA256", "HMAC_SHA1"])
def test_compute_signature_matches_twilio_for_each_algorithm(url: str, algorithm: str) -> None:
    expected = shared_signature(SHARED, url, algorithm)
    assert compute_signature(SHARED, url, WEBHOOK_PARAMS, algorithm) == expected
    assert len(base64.b64decode(expected)) == (32 if algorithm == "HMAC_SHA256" else 20)


@pytest.mark.parametrize("algorithm", ["HMAC_SHA256", "HMAC_SHA1", "hmac_sha256", "Hmac_Sha1"])
def test_a_shared_key_signature_is_checked_with_the_headers_algorithm(algorithm: str) -> None:
    url = URLS[0]
    signature = shared_signature(SHARED, url, algorithm)
    verdict = check_signature(BOTH, url, WEBHOOK_PARAMS, signature, settings_header(algorithm))
    assert verdict == Verdict(True)
    # The same signature under the other algorithm, or without the header: refused.
    other = "HMAC_SHA1" if algorithm.upper() == "HMAC_SHA256" else "HMAC_SHA256"
    assert check_signature(BOTH, url, WEBHOOK_PARAMS, signature, settings_header(other)).reason == (
        "bad_signature"
    )
    assert not check_signature(BOTH, url, WEBHOOK_PARAMS, signature, None).ok


def test_without_the_header_the_auth_token_and_sha1_are_used() -> None:
    url = URLS[0]
    legacy = twilio_signature(TOKEN, url, WEBHOOK_PARAMS)
    assert check_signature(BOTH, url, WEBHOOK_PARAMS, legacy, None).ok
    assert check_signature(BOTH, url, WEBHOOK_PARAMS, legacy, "").ok
    # An auth-token signature under a settings header is checked with the shared key: refused.
    assert not check_signature(BOTH, url, WEBHOOK_PARAMS, legacy, settings_header("HMAC_SHA1")).ok
    # A shared-key signature without the header is checked with the auth token: refused.
    sha1_by_key = shared_signature(SHARED, url, "HMAC_SHA1")
    verdict = check_signature(BOTH, url, WEBHOOK_PARAMS, sha1_by_key, None)
    assert verdict.reason == "bad_signature" and "auth token" in verdict.detail


def test_a_header_without_an_algorithm_means_sha1_as_in_twilio_python() -> None:
    url = URLS[0]
    signature = shared_signature(SHARED, url, "HMAC_SHA1")
    assert check_signature(BOTH, url, WEBHOOK_PARAMS, signature, f"key={KEY_ID}").ok
    assert parse_signature_settings(f" algorithm = HMAC_SHA256 , key = {KEY_ID} ") == (
        KEY_ID,
        "HMAC_SHA256",
    )


@pytest.mark.parametrize("url", ["https://edge.example.com:443/twilio/voice", URLS[0]])
def test_the_port_variants_hold_for_shared_keys(url: str) -> None:
    signature = shared_signature(SHARED, url)
    checked = "https://edge.example.com/twilio/voice"
    assert check_signature(BOTH, checked, WEBHOOK_PARAMS, signature, settings_header()).ok


def test_rotation_accepts_the_previous_shared_key_and_not_a_third() -> None:
    url = URLS[0]
    keys = SigningKeys(auth_tokens=(TOKEN,), shared_keys=(SHARED, OLD_SHARED))
    for secret in (SHARED, OLD_SHARED):
        assert check_signature(
            keys, url, WEBHOOK_PARAMS, shared_signature(secret, url), settings_header()
        ).ok
    third = shared_signature("a-third-key", url)
    assert not check_signature(keys, url, WEBHOOK_PARAMS, third, settings_header()).ok
    # The auth token is no shared key, even when a request says it is one.
    by_token = shared_signature(TOKEN, url)
    assert not check_signature(keys, url, WEBHOOK_PARAMS, by_token, settings_header()).ok


@pytest.mark.parametrize("algorithm", ["HMAC_SHA512", "RSA", "sha256"])
def test_an_unknown_algorithm_is_refused_naming_it(algorithm: str) -> None:
    url = URLS[0]
    signature = shared_signature(SHARED, url)
    verdict = check_signature(BOTH, url, WEBHOOK_PARAMS, signature, settings_header(algorithm))
    assert (verdict.ok, verdict.reason) == (False, "unknown_signature_algorithm")
    assert repr(algorithm) in verdict.detail
    # twilio-python agrees: an unsupported algorithm fails its validation too.
    assert not RequestValidator(SHARED).validate(
        url, MultiParams(WEBHOOK_PARAMS), signature, algorithm
    )


def test_a_header_with_no_shared_key_configured_is_refused_telling_the_operator() -> None:
    url = URLS[0]
    signature = shared_signature(SHARED, url)
    tokens_only = SigningKeys(auth_tokens=(TOKEN,))
    verdict = check_signature(tokens_only, url, WEBHOOK_PARAMS, signature, settings_header())
    assert (verdict.ok, verdict.reason) == (False, "shared_key_not_configured")
    assert "TWILIO_WEBHOOK_SHARED_KEY" in verdict.detail and KEY_ID in verdict.detail


def test_a_missing_signature_is_refused_in_either_mode() -> None:
    for header in (None, settings_header()):
        verdict = check_signature(BOTH, URLS[0], WEBHOOK_PARAMS, None, header)
        assert verdict.reason == "bad_signature" and "missing" in verdict.detail


def test_no_secret_ever_reaches_the_detail() -> None:
    url = URLS[0]
    keys = SigningKeys(auth_tokens=(TOKEN,), shared_keys=(SHARED,))
    details = [
        check_signature(keys, url, WEBHOOK_PARAMS, "x", header).detail
        for header in (None, settings_header(), settings_header("HMAC_MD5"))
    ]
    details.append(
        check_signature(SigningKeys((TOKEN,)), url, WEBHOOK_PARAMS, "x", settings_header()).detail
    )
    for detail in details:
        assert detail and SHARED not in detail and TOKEN not in detail.replace(url, "")


def test_a_hostile_header_is_shortened_in_the_detail() -> None:
    header = "key=" + "k" * 500 + "\n,algorithm=" + "A" * 500
    verdict = check_signature(BOTH, URLS[0], WEBHOOK_PARAMS, "x", header)
    assert verdict.reason == "unknown_signature_algorithm"
    assert len(verdict.detail) < 200 and "\n" not in verdict.detail
