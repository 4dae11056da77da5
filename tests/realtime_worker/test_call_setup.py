"""The per-call set-up hook (call_setup.py): the answer's checks, its storage on the record, and
the HTTP call, against a mock transport (the hook is the user's service)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from services.realtime_worker.call_profile import CallParty, SetupOverrides
from services.realtime_worker.call_setup import (
    MAX_ANSWER_BYTES,
    SetupAnswerError,
    SetupResult,
    decode_overrides,
    encode_overrides,
    parse_setup_answer,
    run_setup_hook,
)

pytestmark = pytest.mark.anyio

URL = "https://hooks.example.com/setup"
PARTY = CallParty("CA0123", caller="+15005550001", called="+15005550006", direction="inbound")

Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


# --- the answer -------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"  \n", b"{}", b" { } "])
def test_an_empty_answer_overrides_nothing(body: bytes) -> None:
    assert parse_setup_answer(body) == SetupOverrides(None, None, {})


def test_a_full_answer() -> None:
    body = json.dumps(
        {
            "instructions": "You are Ada's line.",
            "greeting": "Hello Ada!",
            "variables": {"name": "Ada", "tier": "gold"},
        }
    ).encode()
    assert parse_setup_answer(body) == SetupOverrides(
        "You are Ada's line.", "Hello Ada!", {"name": "Ada", "tier": "gold"}
    )


def test_numbers_become_strings() -> None:
    body = b'{"variables": {"orders": 3, "balance": 12.5, "negative": -1, "zero": 0}}'
    overrides = parse_setup_answer(body)
    assert overrides.variables == {"orders": "3", "balance": "12.5", "negative": "-1", "zero": "0"}


def test_null_fields_count_as_absent() -> None:
    assert parse_setup_answer(b'{"instructions": null, "greeting": null}') == SetupOverrides()


def test_limits_are_inclusive() -> None:
    body = json.dumps(
        {
            "greeting": "g" * 1000,
            "variables": {f"v{i}": "x" * 1000 for i in range(50)},
        }
    ).encode()
    overrides = parse_setup_answer(body)
    assert overrides.greeting == "g" * 1000
    assert len(overrides.variables) == 50
    name = "n" * 64
    assert parse_setup_answer(json.dumps({"variables": {name: 1}}).encode()).variables == {
        name: "1"
    }


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "not JSON: "),
        (b"\xff\xfe", "not JSON: "),
        (b"[1, 2]", "expected a JSON object"),
        (b'"instructions"', "expected a JSON object"),
        (b"null", "expected a JSON object"),
        (b'{"voice": "marin"}', "unknown field 'voice' (allowed: "),
        (b'{"instructions": "x", "tools": []}', "unknown field 'tools' (allowed: "),
        (b'{"instructions": ""}', "field 'instructions' must be a non-empty string"),
        (b'{"instructions": "   "}', "field 'instructions' must be a non-empty string"),
        (b'{"instructions": 5}', "field 'instructions' must be a non-empty string"),
        (b'{"greeting": ""}', "field 'greeting' must be a non-empty string"),
        (b'{"greeting": ["Hi"]}', "field 'greeting' must be a non-empty string"),
        (
            json.dumps({"greeting": "g" * 1001}).encode(),
            "field 'greeting' is longer than 1000 characters",
        ),
        (b'{"variables": ["name"]}', "field 'variables' must be an object of names and values"),
        (b'{"variables": "name=Ada"}', "field 'variables' must be an object of names and values"),
        (b'{"variables": null}', "field 'variables' must be an object of names and values"),
        (b'{"variables": {"1st": "x"}}', "field 'variables': '1st' is not a name"),
        (b'{"variables": {"first name": "x"}}', "field 'variables': 'first name' is not a name"),
        (b'{"variables": {"": "x"}}', "field 'variables': '' is not a name"),
        (
            json.dumps({"variables": {"n" * 65: "x"}}).encode(),
            f"field 'variables': {'n' * 64!r} is not a name",
        ),
        (b'{"variables": {"a": {"b": 1}}}', "field 'variables': a must be a string or a number"),
        (b'{"variables": {"a": [1]}}', "field 'variables': a must be a string or a number"),
        (b'{"variables": {"a": null}}', "field 'variables': a must be a string or a number"),
        (b'{"variables": {"a": true}}', "field 'variables': a must be a string or a number"),
        (b'{"variables": {"a": false}}', "field 'variables': a must be a string or a number"),
        (
            json.dumps({"variables": {f"v{i}": i for i in range(51)}}).encode(),
            "field 'variables' has more than 50 entries",
        ),
        (
            json.dumps({"variables": {"a": "x" * 1001}}).encode(),
            "field 'variables': a is longer than 1000 characters",
        ),
    ],
)
def test_a_bad_answer_names_what_is_wrong(body: bytes, problem: str) -> None:
    with pytest.raises(SetupAnswerError) as caught:
        parse_setup_answer(body)
    assert str(caught.value).startswith(problem)


def test_the_unknown_field_message_lists_the_allowed_fields() -> None:
    message = str(pytest.raises(SetupAnswerError, parse_setup_answer, b'{"x": 1}').value)
    allowed = message.split("(allowed: ", 1)[1].rstrip(")")
    assert sorted(allowed.split(", ")) == ["greeting", "instructions", "variables"]


# --- stored on the record ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        SetupOverrides("Be Ada's line.", "Hello Ada!", {"name": "Ada", "n": "3"}),
        SetupOverrides(instructions="Only instructions."),
        SetupOverrides(greeting='Only a greeting, with "quotes" and ünïcode 🙂.'),
        SetupOverrides(variables={"name": "Ada"}),
        SetupOverrides(),
    ],
)
def test_encode_and_decode_round_trip(overrides: SetupOverrides) -> None:
    stored = encode_overrides(overrides)
    assert isinstance(stored, str)
    assert decode_overrides(stored) == overrides


def test_encode_leaves_out_what_is_not_set() -> None:
    assert json.loads(encode_overrides(SetupOverrides())) == {}
    assert json.loads(encode_overrides(SetupOverrides(greeting="Hi"))) == {"greeting": "Hi"}


@pytest.mark.parametrize(
    "stored", [None, "", "garbage", "[1]", '{"voice": "marin"}', '{"instructions": ""}', "{"]
)
def test_decode_of_nothing_or_garbage_is_none(stored: str | None) -> None:
    assert decode_overrides(stored) is None


# --- the HTTP call ----------------------------------------------------------------------------


async def _run(handler: Handler, timeout_s: float = 1.0) -> SetupResult:
    transport = httpx.MockTransport(handler)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport) as client:
        return await run_setup_hook(client, URL, timeout_s, PARTY, "support")


async def test_the_request_is_a_json_post_of_the_call() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"greeting": "Hello Ada!", "variables": {"name": "Ada"}})

    result = await _run(handler)
    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == URL
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {
        "call_sid": "CA0123",
        "from": "+15005550001",
        "to": "+15005550006",
        "direction": "inbound",
        "agent": "support",
    }
    assert result == SetupResult("ok", SetupOverrides(None, "Hello Ada!", {"name": "Ada"}))


@pytest.mark.parametrize(("status", "body"), [(204, b""), (200, b"{}"), (200, b""), (201, b"  ")])
async def test_an_empty_answer_is_ok_with_no_overrides(status: int, body: bytes) -> None:
    result = await _run(lambda request: httpx.Response(status, content=body))
    assert result == SetupResult("ok", SetupOverrides(), None)


async def test_an_answer_of_exactly_the_limit_is_read() -> None:
    head, tail = b'{"instructions": "', b'"}'
    body = head + b"x" * (MAX_ANSWER_BYTES - len(head) - len(tail)) + tail
    assert len(body) == MAX_ANSWER_BYTES
    result = await _run(lambda request: httpx.Response(200, content=body))
    assert result.outcome == "ok"
    assert result.overrides is not None
    assert result.overrides.instructions == "x" * (MAX_ANSWER_BYTES - len(head) - len(tail))


async def test_an_answer_over_the_limit_is_a_bad_answer() -> None:
    body = b'{"instructions": "' + b"x" * MAX_ANSWER_BYTES + b'"}'
    result = await _run(lambda request: httpx.Response(200, content=body))
    assert result == SetupResult("bad_answer", None, "answer larger than 65536 bytes")


async def test_an_answer_over_the_limit_in_chunks_is_a_bad_answer() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"x" * (MAX_ANSWER_BYTES // 4)

    result = await _run(lambda request: httpx.Response(200, content=chunks()))
    assert result == SetupResult("bad_answer", None, "answer larger than 65536 bytes")


async def test_a_malformed_answer_is_a_bad_answer_naming_the_problem() -> None:
    result = await _run(lambda request: httpx.Response(200, content=b'{"voice": "marin"}'))
    assert (result.outcome, result.overrides) == ("bad_answer", None)
    assert result.problem is not None and result.problem.startswith("unknown field 'voice'")
    result = await _run(lambda request: httpx.Response(200, content=b"<html>oops</html>"))
    assert (result.outcome, result.overrides) == ("bad_answer", None)
    assert result.problem is not None and result.problem.startswith("not JSON: ")


@pytest.mark.parametrize("status", [500, 404, 302, 199])
async def test_an_answer_that_is_not_2xx_is_an_error(status: int) -> None:
    result = await _run(lambda request: httpx.Response(status, json={"greeting": "Hi"}))
    assert result == SetupResult("error", None, f"answered HTTP {status}")


async def test_a_connection_error_is_an_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    result = await _run(handler)
    assert result == SetupResult("error", None, "request failed: ConnectError: connection refused")


async def test_a_hook_slower_than_the_timeout_is_a_timeout() -> None:
    never = asyncio.Event()
    started = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        started.set()
        await never.wait()
        return httpx.Response(200, json={"greeting": "too late"})

    result = await asyncio.wait_for(_run(handler, timeout_s=0.05), timeout=5)
    assert started.is_set()
    assert result == SetupResult("timeout", None, "no answer within 0.05 s")


async def test_a_hook_that_stalls_mid_answer_is_a_timeout() -> None:
    never = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield b'{"greeting": '
        await never.wait()
        yield b'"Hi"}'

    result = await asyncio.wait_for(
        _run(lambda request: httpx.Response(200, content=stalled()), timeout_s=0.05),
        timeout=5,
    )
    assert result == SetupResult("timeout", None, "no answer within 0.05 s")
