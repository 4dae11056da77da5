"""<Dial> parsing (dial_twiml.py), the called party's document (whisper.py) and the callee model
(callee.py): sans I/O."""

from __future__ import annotations

import pytest
from twilio.twiml.voice_response import Dial as TwilioDial
from twilio.twiml.voice_response import VoiceResponse

from services.call_sim.callee import (
    RingPlan,
    action_params,
    child_params,
    plan_ring,
    whole_seconds,
)
from services.call_sim.twiml import (
    Dial,
    DialNoun,
    Hangup,
    Redirect,
    Say,
    TwimlDocument,
    parse_twiml,
    verb_names,
)
from services.call_sim.whisper import read_whisper

PUBLIC = "https://edge.switchboard.example"
RESUME = f"{PUBLIC}/twilio/voice/resume"
HEAD = '<?xml version="1.0" encoding="UTF-8"?>'
WARM = (
    f'{HEAD}<Response><Dial action="{PUBLIC}/twilio/transfer/status" method="POST" '
    'callerId="+15005550001" timeout="30">'
    f'<Number url="{PUBLIC}/twilio/transfer/whisper?call=CA0123456789abcdef0123456789abcdef" '
    'method="POST">+15005550007</Number></Dial></Response>'
)


def only_dial(document: TwimlDocument) -> Dial:
    (dial,) = document.verbs
    assert isinstance(dial, Dial)
    return dial


def dial_problems(inner: str, attributes: str = "") -> tuple[str, ...]:
    return parse_twiml(f"<Response><Dial{attributes}>{inner}</Dial></Response>", RESUME).problems


# --- good documents ---------------------------------------------------------------------------


def test_the_edge_warm_transfer_document() -> None:
    document = parse_twiml(WARM, RESUME)
    assert document.problems == ()
    assert verb_names(document) == ["Dial"]
    dial = only_dial(document)
    assert dial == Dial(
        nouns=(
            DialNoun(
                kind="number",
                address="+15005550007",
                url=f"{PUBLIC}/twilio/transfer/whisper?call=CA0123456789abcdef0123456789abcdef",
                method="POST",
                attributes={
                    "url": f"{PUBLIC}/twilio/transfer/whisper"
                    "?call=CA0123456789abcdef0123456789abcdef",
                    "method": "POST",
                },
            ),
        ),
        action=f"{PUBLIC}/twilio/transfer/status",
        method="POST",
        timeout_s=30,
        caller_id="+15005550001",
        attributes={
            "action": f"{PUBLIC}/twilio/transfer/status",
            "method": "POST",
            "callerId": "+15005550001",
            "timeout": "30",
        },
    )
    assert (dial.time_limit_s, dial.record, dial.hangup_on_star, dial.answer_on_bridge) == (
        14400,
        "do-not-record",
        False,
        False,
    )


def test_a_sip_warm_transfer_and_a_cold_one() -> None:
    sip = only_dial(
        parse_twiml(
            f'<Response><Dial action="{PUBLIC}/twilio/transfer/status" callerId="+15005550001">'
            f'<Sip url="{PUBLIC}/twilio/transfer/whisper?call=CA1" method="POST">'
            "sip:sales@pbx.example.com</Sip></Dial></Response>",
            RESUME,
        )
    )
    (noun,) = sip.nouns
    assert (noun.kind, noun.address, noun.url, noun.method, noun.dialable) == (
        "sip",
        "sip:sales@pbx.example.com",
        f"{PUBLIC}/twilio/transfer/whisper?call=CA1",
        "POST",
        True,
    )
    cold = parse_twiml(
        f'<Response><Dial action="{PUBLIC}/twilio/transfer/status">'
        "<Number>+442071838750</Number></Dial></Response>",
        RESUME,
    )
    assert cold.problems == ()
    (noun,) = only_dial(cold).nouns
    assert (noun.address, noun.url, noun.method) == ("+442071838750", None, "POST")
    assert only_dial(cold).caller_id is None


def test_plain_text_dial_is_a_number() -> None:
    document = parse_twiml("<Response><Dial> +15005550007 </Dial><Say>Goodbye</Say></Response>")
    assert document.problems == ()  # no action: the <Say> runs after the <Dial>
    dial, say = document.verbs
    assert isinstance(dial, Dial) and say == Say("Goodbye")
    assert dial.nouns == (DialNoun(kind="number", address="+15005550007"),)
    assert dial.action is None and dial.timeout_s == 30


def test_relative_urls_resolve_against_the_document() -> None:
    dial = only_dial(
        parse_twiml(
            '<Response><Dial action="/twilio/transfer/status">'
            '<Number url="transfer/whisper?call=CA1" statusCallback="../cb">+15005550007</Number>'
            "</Dial></Response>",
            RESUME,
        )
    )
    assert dial.action == f"{PUBLIC}/twilio/transfer/status"
    (noun,) = dial.nouns
    assert noun.url == f"{PUBLIC}/twilio/voice/transfer/whisper?call=CA1"
    assert noun.status_callback == f"{PUBLIC}/twilio/cb"


def test_every_attribute_the_twilio_library_writes_is_understood() -> None:
    response = VoiceResponse()
    dial = response.dial(
        action="/status",
        method="GET",
        timeout=600,
        hangup_on_star=True,
        time_limit=600,
        caller_id="+15005550001",
        record="record-from-answer-dual",
        trim="do-not-trim",
        recording_status_callback="/recording",
        recording_status_callback_method="GET",
        recording_status_callback_event="in-progress completed absent",
        answer_on_bridge=True,
        ring_tone="uk",
        recording_track="inbound",
        sequential=True,
        refer_url="/refer",
        refer_method="GET",
        events="call-progress-event",
        call_reason="Transfer to sales",
    )
    assert isinstance(dial, TwilioDial)
    dial.number(
        "+15005550007",
        send_digits="ww1234#",
        url="/whisper?call=CA1",
        method="GET",
        status_callback="/child-status",
        status_callback_event="initiated ringing answered completed",
        status_callback_method="GET",
        byoc="BY" + "0123456789abcdef" * 2,
        machine_detection="Enable",
        amd_status_callback="/amd",
        amd_status_callback_method="GET",
        machine_detection_timeout=60,
        machine_detection_speech_threshold=1000,
        machine_detection_speech_end_threshold=5000,
        machine_detection_silence_timeout=2000,
    )
    document = parse_twiml(str(response), RESUME)
    assert document.problems == ()
    parsed = only_dial(document)
    assert (parsed.action, parsed.method, parsed.timeout_s, parsed.time_limit_s) == (
        f"{PUBLIC}/status",
        "GET",
        600,
        600,
    )
    assert (parsed.caller_id, parsed.record, parsed.hangup_on_star, parsed.answer_on_bridge) == (
        "+15005550001",
        "record-from-answer-dual",
        True,
        True,
    )
    (noun,) = parsed.nouns
    assert noun == DialNoun(
        kind="number",
        address="+15005550007",
        url=f"{PUBLIC}/whisper?call=CA1",
        method="GET",
        status_callback=f"{PUBLIC}/child-status",
        status_callback_method="GET",
        status_callback_events=("initiated", "ringing", "answered", "completed"),
        send_digits="ww1234#",
        attributes=noun.attributes,
    )
    assert noun.attributes["byoc"] == "BY" + "0123456789abcdef" * 2
    assert noun.attributes["machineDetectionTimeout"] == "60"


def test_a_sip_noun_from_the_twilio_library_and_a_sip_caller_id() -> None:
    response = VoiceResponse()
    dial = response.dial(caller_id="sales-line_1.b", timeout=5)
    assert isinstance(dial, TwilioDial)
    dial.sip(
        "sips:sales@pbx.example.com:5061;transport=tls?X-Ticket=42",
        username="agent",
        password="s3cret",
        callerDisplayName="Sales desk",
        url="https://other.example/whisper",
        method="POST",
        status_callback_event="completed",
    )
    document = parse_twiml(str(response), RESUME)
    assert document.problems == ()
    parsed = only_dial(document)
    assert (parsed.caller_id, parsed.timeout_s) == ("sales-line_1.b", 5)
    (noun,) = parsed.nouns
    assert (noun.kind, noun.address, noun.url, noun.status_callback_events) == (
        "sip",
        "sips:sales@pbx.example.com:5061;transport=tls?X-Ticket=42",
        "https://other.example/whisper",
        ("completed",),
    )
    assert (noun.attributes["username"], noun.attributes["password"]) == ("agent", "s3cret")


def test_verbs_after_a_dial_without_action_are_reachable() -> None:
    document = parse_twiml(
        "<Response><Dial><Number>+15005550007</Number></Dial>"
        f"<Redirect>{RESUME}</Redirect></Response>",
        RESUME,
    )
    assert document.problems == ()
    assert verb_names(document) == ["Dial", "Redirect"]
    assert document.verbs[1] == Redirect(RESUME)


# --- what Twilio refuses or fails on ------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "problem"),
    [
        ("415-123-4567", "'415-123-4567' is not an E.164 number"),
        ("(415) 123-4567", "is not an E.164 number"),
        ("15005550007", "is not an E.164 number"),
        ("+0123456789", "is not an E.164 number"),
        ("+1234567890123456", "at most 15 digits (Twilio warning 13223, error 13224)"),
        ("+1 500 555 0007", "is not an E.164 number"),
        ("sip:sales@pbx.example.com", "(use <Sip> for a SIP URI)"),
        ("", "<Number> has no address to dial (Twilio warning 13223)"),
    ],
)
def test_a_number_that_is_not_e164_is_not_dialable(number: str, problem: str) -> None:
    problems = dial_problems(f"<Number>{number}</Number>")
    assert len(problems) == 1 and problem in problems[0], problems
    text = f"<Response><Dial><Number>{number}</Number></Dial></Response>"
    (noun,) = only_dial(parse_twiml(text)).nouns
    assert not noun.dialable and noun.address == number.strip()


def test_the_longest_e164_number_is_dialable() -> None:
    assert dial_problems("<Number>+123456789012345</Number>") == ()


@pytest.mark.parametrize(
    "uri",
    [
        "sales@pbx.example.com",
        "http://pbx.example.com",
        "sip:",
        "sip:sales@",
        "sip:sa les@pbx.example.com",
        "tel:+15005550007",
        "sip:" + "a" * 240 + "@pbx.example.com",
    ],
)
def test_a_sip_noun_must_hold_a_sip_uri(uri: str) -> None:
    problems = dial_problems(f"<Sip>{uri}</Sip>")
    assert len(problems) == 1, problems
    assert problems[0] == (
        f"<Sip> {uri!r} is not a sip: or sips: URI under 255 characters (Twilio warning 13243)"
    )


@pytest.mark.parametrize("timeout", ["4", "601", "0", "-5", "30.5", "thirty", "", " "])
def test_a_timeout_outside_5_to_600_whole_seconds_is_refused(timeout: str) -> None:
    text = f'<Response><Dial timeout="{timeout}">+15005550007</Dial></Response>'
    document = parse_twiml(text)
    assert document.problems == (
        f"<Dial> timeout={timeout!r}: must be a whole number from 5 to 600 "
        "(Twilio warning 13212); 30 is used",
    )
    assert only_dial(document).timeout_s == 30


@pytest.mark.parametrize("timeout", ["5", "600", " 45 "])
def test_timeouts_within_the_range(timeout: str) -> None:
    text = f'<Response><Dial timeout="{timeout}">+15005550007</Dial></Response>'
    document = parse_twiml(text)
    assert document.problems == ()
    assert only_dial(document).timeout_s == int(timeout)


@pytest.mark.parametrize(
    ("inner", "attributes", "problem"),
    [
        (
            "+15005550007",
            ' method="PUT"',
            "<Dial> method='PUT': must be GET or POST (Twilio warning 13210)",
        ),
        (
            '<Number method="DELETE">+15005550007</Number>',
            "",
            "<Number> method='DELETE': must be GET or POST (Twilio warning 13221)",
        ),
        (
            '<Sip method="PATCH">sip:a@pbx.example.com</Sip>',
            "",
            "<Sip> method='PATCH': must be GET or POST (Twilio warning 13241)",
        ),
        (
            '<Number statusCallbackMethod="PUT">+15005550007</Number>',
            "",
            "<Number> statusCallbackMethod='PUT': must be GET or POST",
        ),
        (
            "+15005550007",
            ' timeLimit="0"',
            "<Dial> timeLimit='0': must be a whole number ≥ 1 (Twilio warning 13216); 14400 is",
        ),
        (
            "+15005550007",
            ' hangupOnStar="yes"',
            "<Dial> hangupOnStar='yes': must be true or false (Twilio warning 13213)",
        ),
        ("+15005550007", ' answerOnBridge="1"', "<Dial> answerOnBridge='1': must be true or false"),
        ("+15005550007", ' record="yes"', "<Dial> record='yes': must be one of do-not-record"),
        (
            "+15005550007",
            ' callerId="5005550001"',
            "<Dial> callerId='5005550001': must be an E.164 number (Twilio warning 13214)",
        ),
        (
            "<Sip>sip:a@pbx.example.com</Sip>",
            ' callerId="sales line"',
            "<Dial> callerId='sales line': must be E.164 or letters, digits and + - _ .",
        ),
        ("+15005550007", ' action=""', "<Dial> action='': an empty URL"),
        ("+15005550007", ' trim="yes"', "<Dial> trim='yes': must be one of trim-silence"),
        ("+15005550007", ' ringTone="USA"', "<Dial> ringTone='USA': must be a two-letter"),
        ("+15005550007", ' recordingTrack="left"', "<Dial> recordingTrack='left'"),
        (
            "+15005550007",
            ' recordingStatusCallbackEvent="done"',
            "<Dial> recordingStatusCallbackEvent='done': space-separated values from absent",
        ),
        (
            "+15005550007",
            f' callReason="{"x" * 51}"',
            "<Dial> callReason is 51 characters: at most 50",
        ),
        (
            "+15005550007",
            ' callerID="+15005550001"',
            "<Dial> has an attribute 'callerID' Twilio does not know: it is ignored",
        ),
        (
            '<Number statusCallbackEvent="initiated,ringing">+15005550007</Number>',
            "",
            "<Number> statusCallbackEvent='initiated,ringing': space-separated values",
        ),
        (
            '<Number sendDigits="12a">+15005550007</Number>',
            "",
            "<Number> sendDigits='12a': must be digits, #, * and w",
        ),
        ('<Number byoc="BYx">+15005550007</Number>', "", "<Number> byoc='BYx': must be a BYOC"),
        (
            '<Number machineDetectionTimeout="61">+15005550007</Number>',
            "",
            "<Number> machineDetectionTimeout='61': must be a whole number from 3 to 60",
        ),
        (
            '<Number callerId="+15005550001">+15005550007</Number>',
            "",
            "<Number> has an attribute 'callerId' Twilio does not know",
        ),
        (
            '<Sip callerDisplayName="A">sip:a@pbx.example.com</Sip>',
            "",
            "<Sip> callerDisplayName='A': 2 to 255 printable characters (Twilio warning 13259)",
        ),
        (
            "<Sip><Uri>sip:a@pbx.example.com</Uri></Sip>",
            "",
            "<Sip> holds <Uri>: unsupported by the simulator",
        ),
        ("", "", "<Dial> has nothing to dial (Twilio warning 13223)"),
        ("<Say>Hi</Say>", "", "<Dial> holds <Say>, which is not a <Dial> noun"),
        (
            "+15005550007<Number>+15005550008</Number>",
            "",
            "<Dial> holds both text '+15005550007' and nouns",
        ),
        (
            "<Number>+15005550007</Number><Sip>sip:a@pbx.example.com</Sip>",
            "",
            "<Dial> rings 2 parties at once: unsupported by the simulator",
        ),
        (
            "<Number>+15005550007</Number>" * 11,
            "",
            "<Dial> holds more than 10 nouns: Twilio dials at most ten",
        ),
    ],
)
def test_each_problem_is_listed(inner: str, attributes: str, problem: str) -> None:
    problems = dial_problems(inner, attributes)
    assert any(p.startswith(problem) for p in problems), problems


@pytest.mark.parametrize(
    "noun", ["Conference", "Queue", "Client", "Sim", "Application", "WhatsApp"]
)
def test_nouns_the_simulator_cannot_play_are_listed_as_unsupported(noun: str) -> None:
    document = parse_twiml(f"<Response><Dial><{noun}>x</{noun}></Dial></Response>")
    assert document.problems == (f"<Dial><{noun}>: unsupported by the simulator",)
    dial = only_dial(document)
    assert dial.nouns == () and dial.unsupported == (noun,)


def test_verbs_after_a_dial_with_an_action_are_unreachable() -> None:
    document = parse_twiml(
        '<Response><Dial action="/status">+15005550007</Dial><Say>Bye</Say><Hangup/></Response>',
        RESUME,
    )
    assert document.problems == (
        "<Say>, <Hangup> after <Dial action=...> never run: Twilio follows the action",
    )
    assert verb_names(document) == ["Dial", "Say", "Hangup"]


def test_a_bad_value_falls_back_to_the_default_and_a_bad_method_to_post() -> None:
    dial = only_dial(
        parse_twiml(
            '<Response><Dial method="put" timeLimit="x" hangupOnStar="TRUE">'
            '<Number method="get">+15005550007</Number></Dial></Response>'
        )
    )
    assert (dial.method, dial.time_limit_s, dial.hangup_on_star) == ("POST", 14400, False)
    assert dial.nouns[0].method == "GET"  # methods are read case-insensitively


# --- the called party's document -----------------------------------------------------------------


def test_whisper_says_are_heard_and_hangup_declines() -> None:
    heard = read_whisper(
        parse_twiml(
            "<Response><Say>A caller about order 42.</Say><Pause/><Say>Connecting.</Say></Response>"
        )
    )
    assert heard.heard == ("A caller about order 42.", "Connecting.")
    assert (heard.declined, heard.problems, heard.notes) == (False, (), ())
    declined = read_whisper(
        parse_twiml("<Response><Say>Busy?</Say><Hangup/><Say>never</Say></Response>")
    )
    assert (declined.heard, declined.declined) == (("Busy?",), True)


@pytest.mark.parametrize(
    ("verb", "problem"),
    [
        (
            "<Dial>+15005550008</Dial>",
            "<Dial> in the called party's document: Twilio error 13201",
        ),
        (
            '<Connect><Stream url="wss://h.example/m"/></Connect>',
            "<Connect> in the called party's document: Twilio documents only <Say>, <Play>, "
            "<Gather> and <Hangup> there; skipped",
        ),
        ("<Redirect>/again</Redirect>", "<Redirect> in the called party's document"),
        ("<Enqueue>support</Enqueue>", "<Enqueue> in the called party's document"),
    ],
)
def test_whisper_verbs_twilio_does_not_allow_are_problems(verb: str, problem: str) -> None:
    outcome = read_whisper(parse_twiml(f"<Response>{verb}<Say>After</Say></Response>"))
    assert any(p.startswith(problem) for p in outcome.problems), outcome.problems
    assert outcome.heard == ("After",) and not outcome.declined


def test_whisper_reject_reads_as_hangup_and_play_is_noted() -> None:
    outcome = read_whisper(parse_twiml("<Response><Play>x.mp3</Play><Reject/></Response>"))
    assert outcome.declined
    assert outcome.notes == ("the simulator cannot play <Play> to the called party: skipped",)
    assert outcome.problems == (
        "<Reject> in the called party's document: the call is already answered; "
        "the simulator reads it as <Hangup>",
    )
    assert parse_twiml("<Response><Hangup/></Response>").verbs == (Hangup(),)


# --- the callee and the parameters --------------------------------------------------------------


def test_ring_plans() -> None:
    assert plan_ring("answer", 1.0, 30, True) == RingPlan(1.0, True, "completed")
    assert plan_ring("answer", 30.0, 30, True) == RingPlan(30.0, True, "completed")
    assert plan_ring("answer", 31.0, 30, True) == RingPlan(30.0, False, "no-answer")  # rang out
    assert plan_ring("no-answer", 2.0, 30, True) == RingPlan(2.0, False, "no-answer")
    assert plan_ring("no-answer", 90.0, 5, True) == RingPlan(5.0, False, "no-answer")
    assert plan_ring("busy", 2.0, 30, True) == RingPlan(0.0, False, "busy")
    assert plan_ring("failed", 2.0, 30, True) == RingPlan(0.0, False, "failed")
    assert plan_ring("answer", 1.0, 30, False) == RingPlan(0.0, False, "failed")  # not dialable


def test_child_and_action_parameters() -> None:
    assert child_params(
        child_sid="CA2", parent_sid="CA1", account_sid="AC1", from_="+15005550001", to="+1500"
    ) == {
        "CallSid": "CA2",
        "ParentCallSid": "CA1",
        "AccountSid": "AC1",
        "From": "+15005550001",
        "To": "+1500",
        "CallStatus": "in-progress",
        "Direction": "outbound-dial",
        "ApiVersion": "2010-04-01",
    }
    answered = action_params(
        status="completed", child_sid="CA2", answered=True, bridged=True, duration_s=1.4, kind=None
    )
    assert answered == {
        "DialCallStatus": "completed",
        "DialCallSid": "CA2",
        "DialBridged": "true",
        "DialCallDuration": "1",
    }
    busy = action_params(
        status="busy", child_sid="CA3", answered=False, bridged=False, duration_s=0, kind="sip"
    )
    assert busy["DialSipResponseCode"] == "486" and "DialCallDuration" not in busy
    assert busy["DialSipCallId"].endswith("@0.0.0.0") and len(busy["DialSipCallId"]) == 40
    assert (whole_seconds(0.49), whole_seconds(0.5), whole_seconds(2.51)) == (0, 1, 3)
