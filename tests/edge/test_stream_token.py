"""Per-call stream tokens: bound to one call, expiring, unforgeable, never a crash."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.edge.stream_token import TokenError, derive_token_key, issue_token, verify_token

CALL_SID = "CA" + "1" * 32
OTHER_CALL = "CA" + "2" * 32
KEY = derive_token_key("auth-token")
NOW = 1_800_000_000.0


def _kind(keys: list[bytes], token: str, call_sid: str = CALL_SID, now: float = NOW) -> str:
    with pytest.raises(TokenError) as info:
        verify_token(keys, token, call_sid, now)
    return info.value.kind


def test_fresh_token_verifies() -> None:
    token = issue_token(KEY, CALL_SID, NOW, 60)
    verify_token([KEY], token, CALL_SID, NOW)
    verify_token([KEY], token, CALL_SID, NOW + 60)  # still valid on the last second


def test_token_shape_fits_a_twiml_parameter() -> None:
    token = issue_token(KEY, CALL_SID, NOW, 60)
    version, expiry, mac = token.split(".")
    assert (version, int(expiry)) == ("v1", int(NOW) + 60)
    assert mac.isascii() and "=" not in mac and "/" not in mac and "+" not in mac
    assert len("token") + len(token) < 500  # <Parameter> name + value limit


def test_expired_token() -> None:
    token = issue_token(KEY, CALL_SID, NOW, 60)
    assert _kind([KEY], token, now=NOW + 61) == "expired"


def test_token_of_another_call() -> None:
    token = issue_token(KEY, OTHER_CALL, NOW, 60)
    assert _kind([KEY], token) == "bad_token"


def test_extended_expiry_breaks_the_mac() -> None:
    version, expiry, mac = issue_token(KEY, CALL_SID, NOW, 60).split(".")
    assert _kind([KEY], f"{version}.{int(expiry) + 3600}.{mac}") == "bad_token"


@pytest.mark.parametrize("position", [0, 10, -1])
def test_tampered_mac(position: int) -> None:
    token = issue_token(KEY, CALL_SID, NOW, 60)
    chars = list(token)
    index = position if position >= 0 else len(chars) + position
    index = token.rindex(".") + 1 + index if position >= 0 else index
    chars[index] = "A" if chars[index] != "A" else "B"
    assert _kind([KEY], "".join(chars)) == "bad_token"


def test_wrong_secret() -> None:
    token = issue_token(derive_token_key("another secret"), CALL_SID, NOW, 60)
    assert _kind([KEY], token) == "bad_token"


def test_any_of_several_keys_verifies() -> None:
    old, new = derive_token_key("old"), derive_token_key("new")
    verify_token([new, old], issue_token(old, CALL_SID, NOW, 60), CALL_SID, NOW)
    verify_token([new, old], issue_token(new, CALL_SID, NOW, 60), CALL_SID, NOW)


def test_derived_key_is_not_the_secret() -> None:
    assert derive_token_key("secret") != b"secret"
    assert derive_token_key("secret") == derive_token_key("secret")
    assert derive_token_key("secret") != derive_token_key("secret2")


@pytest.mark.parametrize(
    "token",
    [
        "",
        "opaque-per-call-token",
        "v1",
        "v1.123",
        "v1.123.abc.def",
        "v2.1800000060.abc",
        "v1..abc",
        "v1.-5.abc",
        "v1.+5.abc",
        "v1. 5.abc",
        "v1.12e3.abc",
        "v1.1234567890123.abc",  # more digits than any expiry we issue
        "v1.².abc",  # str.isdigit() says yes, int() says no
        "v1.١٨٠٠٠٠٠٠٦٠.abc",  # Arabic-Indic digits
    ],
)
def test_malformed(token: str) -> None:
    assert _kind([KEY], token) == "malformed"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_token_raises_only_token_error(token: str) -> None:
    with pytest.raises(TokenError) as info:
        verify_token([KEY], token, CALL_SID, NOW)
    assert info.value.kind in ("malformed", "bad_token", "expired")
