"""Whole simulated calls that <Dial> a person, over real loopback sockets against a stub edge.

The stub is the call simulator's fake edge (tests/call_sim/fake_edge.py, reused as it is) plus
the transfer routes: the resume webhook answers a <Dial>, the whisper route answers the called
party's TwiML, the action route answers <Hangup/> or a new <Connect><Stream>. The first stream
is closed by the edge after a few frames, as when the AI hands off.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from twilio.request_validator import RequestValidator

from services.call_sim import CallConfig, CallReport, place_call
from services.call_sim.__main__ import main
from services.edge import twiml
from services.edge.urls import PublicUrls
from tests.call_sim.fake_edge import FakeEdge, running

pytestmark = pytest.mark.anyio

TOKEN = "fake-edge-auth-token"
PUBLIC = "https://edge.switchboard.example"
FRAME = 160
DROP_AFTER = 6  # frames: then the edge closes the first stream (1011), as at a hand-off
WHISPER_PATH = "/twilio/transfer/whisper"
ACTION_PATH = "/twilio/transfer/status"
RESUME_PATH = "/twilio/voice/resume"
HEAD = '<?xml version="1.0" encoding="UTF-8"?>'
WARM = (
    HEAD + '<Response><Dial action="{public}/twilio/transfer/status" method="POST" '
    'callerId="+15005550001" timeout="30">'
    '<Number url="{public}/twilio/transfer/whisper?call={call}" method="{whisper_method}">'
    "+15005550007</Number></Dial></Response>"
)
SIP_WARM = (
    HEAD + '<Response><Dial action="{public}/twilio/transfer/status" method="POST" '
    'callerId="+15005550001" timeout="30"><Sip url="{public}/twilio/transfer/whisper?call={call}"'
    ' method="POST">sip:sales@pbx.example.com</Sip></Dial></Response>'
)
COLD = (
    HEAD + '<Response><Dial action="{public}/twilio/transfer/status" method="POST" '
    'callerId="+15005550001" timeout="30">{noun}</Dial></Response>'
)
NO_ACTION = (
    HEAD + "<Response><Dial><Number>+15005550007</Number></Dial>"
    "<Say>Nobody is free, goodbye.</Say><Hangup/></Response>"
)
WHISPER = HEAD + "<Response><Say>A caller about order 42.</Say><Say>Connecting.</Say></Response>"
CALLER_KEYS = {"CallSid", "AccountSid", "From", "To", "CallStatus", "Direction", "ApiVersion"}
CHILD_KEYS = CALLER_KEYS | {"ParentCallSid"}


def speech(frames: int, seed: int) -> bytes:
    """Random bytes with no 0xFF, so that no frame looks like the silence the edge skips."""
    rng = random.Random(seed)
    return bytes(rng.randrange(0, 255) for _ in range(frames * FRAME))


@dataclass
class Hit:
    """One request to a transfer route, as the edge saw it."""

    path: str
    method: str
    url: str  # the public URL requested, query string included
    params: dict[str, str]  # form fields (POST) or query fields (GET)
    form: list[tuple[str, str]]  # the POST body's pairs: what the signature covers with the URL
    signature: str
    ok: bool  # the edge's own signature check
    at: float  # loop time of arrival


@dataclass
class TransferEdge(FakeEdge):
    dial_twiml: str = WARM  # the resume webhook's answer; {public}, {call}, {whisper_method}
    whisper_method: str = "POST"
    whisper_twiml: str = WHISPER
    back_to_ai: bool = False  # the action answers a new <Connect><Stream>; else <Hangup/>
    refuse: str | None = None  # a path answered 403, as a route refusing the request
    hits: list[Hit] = field(default_factory=list)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/twilio/voice", self._voice, methods=["POST"]),
                Route(RESUME_PATH, self._resume, methods=["POST"]),
                Route("/twilio/stream-status", self._status, methods=["POST"]),
                Route(WHISPER_PATH, self._whisper, methods=["GET", "POST"]),
                Route(ACTION_PATH, self._action, methods=["GET", "POST"]),
                WebSocketRoute("/twilio/media", self._media),
            ]
        )

    async def _hit(self, request: Request) -> Hit:
        query = request.url.query
        url = self.public_url + request.url.path + (f"?{query}" if query else "")
        form = parse_qsl((await request.body()).decode(), keep_blank_values=True)
        params = dict(form) if request.method == "POST" else dict(parse_qsl(query))
        hit = Hit(
            path=request.url.path,
            method=request.method,
            url=url,
            params=params,
            form=form,
            signature=request.headers.get("x-twilio-signature", ""),
            ok=self._check(url, form, request.headers),
            at=asyncio.get_running_loop().time(),
        )
        self.hits.append(hit)
        return hit

    def _answer(self, hit: Hit, document: str) -> Response:
        if not hit.ok or hit.path == self.refuse:
            return Response("invalid Twilio signature", status_code=403)
        return Response(document, media_type="text/xml")

    async def _resume(self, request: Request) -> Response:
        hit = await self._hit(request)
        document = self.dial_twiml.format(
            public=self.public_url, call=hit.params["CallSid"], whisper_method=self.whisper_method
        )
        return self._answer(hit, document)

    async def _whisper(self, request: Request) -> Response:
        return self._answer(await self._hit(request), self.whisper_twiml)

    async def _action(self, request: Request) -> Response:
        hit = await self._hit(request)
        if not self.back_to_ai:
            return self._answer(hit, twiml.hangup())
        urls = PublicUrls(self.public_url)
        sid = hit.params["CallSid"]
        return self._answer(
            hit, twiml.connect_stream(urls.media, "tok-" + sid, urls.resume, urls.status)
        )

    def at(self, path: str) -> list[Hit]:
        return [hit for hit in self.hits if hit.path == path]


@asynccontextmanager
async def serving(stub: TransferEdge) -> AsyncIterator[TransferEdge]:
    """``fake_edge.running``, typed for the transfer edge."""
    async with running(stub):
        yield stub


def edge(**extra: Any) -> TransferEdge:
    return TransferEdge(PUBLIC, TOKEN, drop_first_stream_after=DROP_AFTER, **extra)


def config(edge_url: str, audio: bytes, **extra: Any) -> CallConfig:
    return CallConfig(
        edge_urls=[edge_url],
        public_url=PUBLIC,
        auth_token=TOKEN,
        caller_audio=audio,
        hold_s=0.2,
        timeout_s=15.0,
        linger_s=1.0,
        quiet_s=0.1,
        **extra,
    )


def caller_fields(report: CallReport) -> dict[str, str]:
    return {
        "CallSid": report.call_sid,
        "AccountSid": report.account_sid,
        "From": "+15005550006",
        "To": "+15005550001",
        "CallStatus": "in-progress",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
    }


async def test_an_answered_warm_transfer() -> None:
    """The person answers: their whisper is fetched for their own leg, they hear its <Say>s,
    stay on for callee_talk_s, hang up, and the action is told the transfer completed."""
    audio = speech(20, seed=31)
    async with serving(edge()) as stub:
        report = await place_call(
            config(stub.url, audio, callee="answer", callee_ring_s=0.2, callee_talk_s=1.0)
        )
    assert report.ok, report.problems()
    (resume,) = stub.at(RESUME_PATH)
    (whisper,) = stub.at(WHISPER_PATH)
    (action,) = stub.at(ACTION_PATH)
    assert resume.ok and whisper.ok and action.ok

    # The whisper: the called party's leg, signed over the URL with its query string.
    assert whisper.method == "POST"
    assert whisper.url == f"{PUBLIC}{WHISPER_PATH}?call={report.call_sid}"
    child_sid = whisper.params["CallSid"]
    assert child_sid.startswith("CA") and len(child_sid) == 34 and child_sid != report.call_sid
    assert whisper.params == {
        "CallSid": child_sid,
        "ParentCallSid": report.call_sid,
        "AccountSid": report.account_sid,
        "From": "+15005550001",  # the <Dial callerId>
        "To": "+15005550007",
        "CallStatus": "in-progress",
        "Direction": "outbound-dial",
        "ApiVersion": "2010-04-01",
    }
    assert whisper.at - resume.at >= 0.2  # it rang first

    # The action: the caller's own fields, and how the <Dial> ended.
    assert action.method == "POST" and action.url == f"{PUBLIC}{ACTION_PATH}"
    assert action.params == {
        **caller_fields(report),
        "DialCallStatus": "completed",
        "DialCallSid": child_sid,
        "DialCallDuration": "1",
        "DialBridged": "true",
    }
    assert action.at - whisper.at >= 1.0  # the person talked for callee_talk_s first

    (dial,) = report.dials
    assert (dial.noun, dial.address, dial.caller_id, dial.from_number, dial.timeout_s) == (
        "number",
        "+15005550007",
        "+15005550001",
        "+15005550001",
        30,
    )
    assert dial.whisper == ["A caller about order 42.", "Connecting."]
    assert dial.whisper_url == whisper.url and not dial.whisper_declined
    assert (dial.callee, dial.ring_s, dial.dial_call_sid, dial.dial_call_status) == (
        "answer",
        0.2,
        child_sid,
        "completed",
    )
    assert dial.bridged and dial.dial_call_duration == 1 and 1.0 <= dial.connected_s < 1.5
    assert (dial.action_http_status, dial.action_answer, dial.after_streams) == (200, ["Hangup"], 1)
    assert report.said == []  # the whisper is for the person, not the caller

    # The action's <Hangup/> ended the call; the whisper is not one of the caller's documents.
    assert report.closed_by == "edge" and report.close_codes == [1011]
    assert report.redirects == [f"{PUBLIC}{RESUME_PATH}"]
    assert len(report.twiml) == 3 and "<Hangup/>" in report.twiml[2]
    as_json = json.loads(json.dumps(report.to_dict()))["dials"]
    assert as_json == [dial.to_dict()]
    assert as_json[0]["whisper"] == ["A caller about order 42.", "Connecting."]
    assert as_json[0]["dial_call_status"] == "completed" and as_json[0]["from"] == "+15005550001"


async def test_no_answer_brings_the_caller_back_to_the_ai_on_a_new_stream() -> None:
    audio = speech(80, seed=32)  # 1.6 s: the caller is still talking after the transfer fails
    async with serving(edge(back_to_ai=True)) as stub:
        report = await place_call(
            config(stub.url, audio, callee="no-answer", callee_ring_s=0.3, callee_talk_s=5.0)
        )
    assert report.ok, report.problems()
    assert stub.at(WHISPER_PATH) == []  # nobody answered: no whisper
    (resume,) = stub.at(RESUME_PATH)
    (action,) = stub.at(ACTION_PATH)
    assert action.params == {
        **caller_fields(report),
        "DialCallStatus": "no-answer",
        "DialCallSid": report.dials[0].dial_call_sid,
        "DialBridged": "false",
    }
    assert action.at - resume.at >= 0.3  # it rang for callee_ring_s

    (dial,) = report.dials
    assert (dial.dial_call_status, dial.bridged, dial.dial_call_duration) == (
        "no-answer",
        False,
        None,
    )
    assert dial.action_answer == ["Connect", "Redirect"] and dial.after_streams == 1

    # Two streams: the AI before the transfer, the AI again after it failed.
    assert len(report.stream_sids) == 2 and [s.stream_sid for s in report.streams] == (
        report.stream_sids
    )
    assert report.close_codes == [1011, 1000] and report.closed_by == "caller"
    first, second = report.streams
    one, two = stub.streams
    assert first.sent == bytes(one.audio_in) == audio[: DROP_AFTER * FRAME]
    assert first.received == audio[: (DROP_AFTER - 1) * FRAME]  # the dropping frame: no echo
    assert first.heard == first.received[: len(first.heard)]
    # The caller spoke on while the phone rang: that audio reached nobody.
    ((lost_start, lost_end),) = report.caller_audio_lost
    assert lost_start == DROP_AFTER * FRAME
    assert report.caller_audio_lost_ms >= 300 - 20
    full = audio + b"\xff" * (10 * FRAME)
    assert second.sent == bytes(two.audio_in) == full[lost_end:]
    assert second.received == second.heard == audio[lost_end:]  # heard in full after the dial
    assert report.heard_audio == first.heard + second.heard
    streams_json = report.to_dict()["streams"]
    assert [s["heard_audio"]["bytes"] for s in streams_json] == [
        len(first.heard),
        len(audio) - lost_end,
    ]


@pytest.mark.parametrize("callee", ["busy", "failed"])
async def test_busy_and_failed_reach_the_action_at_once(callee: str) -> None:
    audio = speech(10, seed=33)
    async with serving(edge()) as stub:
        report = await place_call(
            config(stub.url, audio, callee=callee, callee_ring_s=5.0, callee_talk_s=5.0)
        )
    assert report.ok, report.problems()
    assert stub.at(WHISPER_PATH) == []
    (resume,) = stub.at(RESUME_PATH)
    (action,) = stub.at(ACTION_PATH)
    assert action.params["DialCallStatus"] == callee
    assert action.params["DialBridged"] == "false" and "DialCallDuration" not in action.params
    assert action.at - resume.at < 1.0  # not the 5 s ring
    (dial,) = report.dials
    assert (dial.callee, dial.ring_s, dial.dial_call_status) == (callee, 0.0, callee)
    assert report.closed_by == "edge"


@pytest.mark.parametrize(
    ("noun", "kind", "sip_code"),
    [
        ("<Number>+15005550007</Number>", "number", None),
        ("<Sip>sip:sales@pbx.example.com</Sip>", "sip", "200"),
    ],
)
async def test_a_cold_transfer_has_no_whisper(noun: str, kind: str, sip_code: str | None) -> None:
    audio = speech(10, seed=34)
    dial_twiml = COLD.replace("{noun}", noun)
    async with serving(edge(dial_twiml=dial_twiml)) as stub:
        report = await place_call(config(stub.url, audio, callee_ring_s=0.1, callee_talk_s=0.6))
    assert report.ok, report.problems()
    assert stub.at(WHISPER_PATH) == []
    (resume,) = stub.at(RESUME_PATH)
    (action,) = stub.at(ACTION_PATH)
    (dial,) = report.dials
    assert (dial.noun, dial.whisper_url, dial.whisper, dial.bridged) == (kind, None, [], True)
    assert action.at - resume.at >= 0.7  # rang 0.1 s, then talked 0.6 s
    assert dial.connected_s >= 0.6
    expected = {
        **caller_fields(report),
        "DialCallStatus": "completed",
        "DialCallSid": dial.dial_call_sid,
        "DialCallDuration": "1",  # 0.6 s, rounded
        "DialBridged": "true",
    }
    if sip_code is not None:
        sip_call_id = action.params["DialSipCallId"]
        assert sip_call_id.endswith("@0.0.0.0") and len(sip_call_id) == 40
        expected |= {"DialSipResponseCode": sip_code, "DialSipCallId": sip_call_id}
    assert action.params == expected


async def test_a_sip_warm_transfer_sends_the_sip_uri_as_to() -> None:
    async with serving(edge(dial_twiml=SIP_WARM)) as stub:
        report = await place_call(
            config(stub.url, speech(10, seed=35), callee_ring_s=0.1, callee_talk_s=0.1)
        )
    assert report.ok, report.problems()
    (whisper,) = stub.at(WHISPER_PATH)
    assert whisper.params["To"] == "sip:sales@pbx.example.com"
    assert whisper.params["From"] == "+15005550001"
    (action,) = stub.at(ACTION_PATH)
    assert action.params["DialSipResponseCode"] == "200"
    assert report.dials[0].noun == "sip" and report.dials[0].whisper == [
        "A caller about order 42.",
        "Connecting.",
    ]


async def test_a_dial_without_action_goes_on_with_the_next_verb() -> None:
    async with serving(edge(dial_twiml=NO_ACTION)) as stub:
        report = await place_call(
            config(stub.url, speech(10, seed=36), callee="no-answer", callee_ring_s=0.1)
        )
    assert report.ok, report.problems()
    assert stub.at(ACTION_PATH) == [] and stub.at(WHISPER_PATH) == []
    (dial,) = report.dials
    assert (dial.action, dial.dial_call_status, dial.action_http_status) == (
        None,
        "no-answer",
        None,
    )
    assert dial.action_answer == []
    # The <Say> and <Hangup/> after the <Dial> ran.
    assert report.said == ["Nobody is free, goodbye."]
    assert report.closed_by == "edge" and len(report.twiml) == 2


async def test_a_declining_whisper_completes_unbridged_without_talk_time() -> None:
    declining = HEAD + "<Response><Say>Take a call about billing?</Say><Hangup/></Response>"
    async with serving(edge(whisper_twiml=declining)) as stub:
        report = await place_call(
            config(stub.url, speech(10, seed=37), callee_ring_s=0.1, callee_talk_s=3.0)
        )
    assert report.ok, report.problems()
    (whisper,) = stub.at(WHISPER_PATH)
    (action,) = stub.at(ACTION_PATH)
    assert action.at - whisper.at < 1.0  # no 3 s of talk: the person hung up
    assert (
        action.params["DialCallStatus"],
        action.params["DialBridged"],
        action.params["DialCallDuration"],
    ) == ("completed", "false", "0")
    (dial,) = report.dials
    assert dial.whisper == ["Take a call about billing?"] and dial.whisper_declined
    assert not dial.bridged


async def test_a_whisper_that_dials_is_a_protocol_problem() -> None:
    bad = HEAD + "<Response><Say>Hi</Say><Dial>+15005550008</Dial></Response>"
    async with serving(edge(whisper_twiml=bad)) as stub:
        report = await place_call(
            config(stub.url, speech(10, seed=38), callee_ring_s=0.05, callee_talk_s=0.05)
        )
    assert report.error is None and not report.ok
    assert report.protocol_violations == [
        "whisper twiml: <Dial> in the called party's document: Twilio error 13201 "
        "(cannot Dial out from a Dial call segment)"
    ]
    assert len(stub.at(ACTION_PATH)) == 1  # the call itself went on


async def test_whisper_and_action_requests_validate_with_twilios_request_validator() -> None:
    validator = RequestValidator(TOKEN)
    async with serving(edge(whisper_method="GET")) as stub:
        report = await place_call(
            config(stub.url, speech(10, seed=39), callee_ring_s=0.05, callee_talk_s=0.05)
        )
    assert report.ok, report.problems()
    (whisper,) = stub.at(WHISPER_PATH)
    (action,) = stub.at(ACTION_PATH)

    # GET: the fields travel in the query, and the signature covers the whole URL alone.
    assert whisper.method == "GET" and whisper.form == []
    assert whisper.url.startswith(f"{PUBLIC}{WHISPER_PATH}?call={report.call_sid}&")
    assert whisper.params["ParentCallSid"] == report.call_sid
    assert whisper.params["Direction"] == "outbound-dial"
    assert validator.validate(whisper.url, {}, whisper.signature)
    without_query = whisper.url.split("?")[0]
    assert not validator.validate(without_query, {}, whisper.signature)

    # POST: the URL and the sorted form fields.
    assert validator.validate(action.url, dict(action.form), action.signature)
    tampered = {**dict(action.form), "DialCallStatus": "no-answer"}
    assert not validator.validate(action.url, tampered, action.signature)
    assert all(hit.ok for hit in stub.hits)


@pytest.mark.parametrize("refused", [WHISPER_PATH, ACTION_PATH])
async def test_a_403_from_a_transfer_route_fails_the_call_like_any_webhook(refused: str) -> None:
    async with serving(edge(refuse=refused)) as stub:
        report = await place_call(
            config(stub.url, speech(10, seed=40), callee_ring_s=0.05, callee_talk_s=0.05)
        )
    assert not report.ok and report.error is not None
    assert f"{PUBLIC}{refused}" in report.error and "answered HTTP 403" in report.error
    (dial,) = report.dials
    if refused == WHISPER_PATH:
        assert dial.error == report.error and stub.at(ACTION_PATH) == []
        assert dial.dial_call_status is None  # the dial never finished
    else:
        assert dial.error is None and dial.action_http_status == 403
        assert dial.dial_call_status == "completed"


async def test_cli_flags_set_the_callee_and_the_json_lists_the_dials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audio_file = tmp_path / "caller.ulaw"
    audio_file.write_bytes(speech(10, seed=41))
    async with serving(edge()) as stub:
        args = ["--edge", stub.url, "--public-url", PUBLIC, "--auth-token", TOKEN]
        args += ["--audio", str(audio_file), "--hold", "0.2", "--json"]
        code = await asyncio.to_thread(
            main, [*args, "--callee", "busy", "--callee-ring-s", "0.1", "--callee-talk-s", "0"]
        )
        negative = await asyncio.to_thread(main, [*args, "--callee-ring-s", "-1"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert negative == 2 and "must not be negative" in out.err
    (report,) = json.loads(out.out)
    (dial,) = report["dials"]
    assert (dial["callee"], dial["dial_call_status"], dial["bridged"]) == ("busy", "busy", False)
    assert (dial["noun"], dial["address"], dial["caller_id"], dial["timeout_s"]) == (
        "number",
        "+15005550007",
        "+15005550001",
        30,
    )
    assert dial["whisper"] == [] and dial["action_answer"] == ["Hangup"]
    assert [s["stream_sid"] for s in report["streams"]] == report["stream_sids"]
    assert stub.at(ACTION_PATH)[0].params["DialCallStatus"] == "busy"


def test_a_bad_callee_is_refused() -> None:
    bad = CallConfig(edge_urls=["http://127.0.0.1:1"], public_url=PUBLIC, auth_token=TOKEN)
    bad.callee = "maybe"  # type: ignore[assignment]
    with pytest.raises(ValueError, match="callee='maybe'"):
        asyncio.run(place_call(bad))
