"""The simulator's pure rules for a stream's end: what the call does next, the caller's audio
lost while Twilio reconnects, the gaps in the edge's audio, and how requests are signed."""

from __future__ import annotations

import json

import pytest
from twilio.request_validator import RequestValidator

from services.call_sim.caller_audio import Outgoing, caller_frames
from services.call_sim.report import CallConfig, CallReport
from services.call_sim.signing import SETTINGS_HEADER, Signer, new_shared_key_id
from services.call_sim.stream_end import AfterStream, StreamOutcome, after_stream
from services.edge.signature import SigningKeys, check_signature

FRAME = 160

# --- what follows a stream ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "end", "continue_"),
    [
        # The caller hung up: the call is over either way.
        (StreamOutcome("caller", 1000, close_frame=True), "hung_up", "hung_up"),
        (StreamOutcome("caller", 1006, close_frame=False), "hung_up", "hung_up"),
        # The edge closed with a close frame, whatever the code: documented, the next verb.
        (StreamOutcome("edge", 1000, close_frame=True), "next_verb", "next_verb"),
        (StreamOutcome("edge", 1011, close_frame=True), "next_verb", "next_verb"),
        # The edge vanished without one (31903): the mode decides.
        (StreamOutcome("edge", 1006, close_frame=False), "call_ends", "next_verb"),
    ],
)
def test_only_an_abrupt_drop_depends_on_the_mode(
    outcome: StreamOutcome, end: str, continue_: str
) -> None:
    assert after_stream(outcome, "end") is AfterStream(end)
    assert after_stream(outcome, "continue") is AfterStream(continue_)
    assert outcome.abrupt == (end == "call_ends")


def test_the_conservative_reading_is_the_default() -> None:
    assert CallConfig(
        edge_urls=["http://e"], public_url="https://p", auth_token="t"
    ).abrupt_drop == ("end")


# --- the caller talks in real time -------------------------------------------------------


def _frames(count: int) -> list[bytes]:
    return [bytes([index]) * FRAME for index in range(count)]


def test_the_first_stream_sets_the_clock_and_loses_nothing() -> None:
    outgoing = Outgoing(_frames(10))
    outgoing.resume(100.0)
    assert (outgoing.origin, outgoing.next_index, outgoing.lost) == (100.0, 0, [])
    assert outgoing.due_at(0) == 100.0
    assert outgoing.due_at(5) == pytest.approx(100.1)


def test_a_new_stream_starts_with_the_frame_due_now_and_the_rest_is_lost() -> None:
    outgoing = Outgoing(_frames(100))
    outgoing.resume(0.0)
    outgoing.next_index = 6  # the first stream carried frames 0-5, then the edge went away
    outgoing.resume(0.431)  # the new stream is up 431 ms after the first started
    assert outgoing.next_index == 21  # frame 21 is spoken from 420 to 440 ms
    assert outgoing.lost == [(6, 21)]
    assert outgoing.lost_byte_ranges == [(6 * FRAME, 21 * FRAME)]
    assert outgoing.due_at(outgoing.next_index) <= 0.431 < outgoing.due_at(22)


def test_a_stream_back_before_the_next_frame_is_due_loses_nothing() -> None:
    outgoing = Outgoing(_frames(100))
    outgoing.resume(0.0)
    outgoing.next_index = 6
    outgoing.resume(0.119)  # frame 6 is due at 120 ms
    assert (outgoing.next_index, outgoing.lost) == (6, [])


def test_a_caller_who_finished_talking_during_the_reconnection_has_nothing_left() -> None:
    outgoing = Outgoing(_frames(10))
    outgoing.resume(0.0)
    outgoing.next_index = 3
    outgoing.resume(5.0)
    assert outgoing.done and outgoing.lost == [(3, 10)]


def test_every_reconnection_is_recorded() -> None:
    outgoing = Outgoing(caller_frames(b"\x01" * 100 * FRAME, hold_s=0))
    outgoing.resume(0.0)
    outgoing.next_index = 10
    outgoing.resume(0.5)
    outgoing.next_index = 40
    outgoing.resume(1.0)
    assert outgoing.lost == [(10, 25), (40, 50)]
    report = CallReport("CA", "AC", caller_audio_lost=outgoing.lost_byte_ranges)
    assert report.caller_audio_lost_ms == pytest.approx((15 + 10) * 20)


# --- gaps in the edge's audio ------------------------------------------------------------


def _report(arrivals: list[tuple[float, int]]) -> CallReport:
    return CallReport("CA", "AC", media_arrivals=arrivals)


def test_longest_gap_between_arrivals() -> None:
    report = _report([(100.0, 160), (120.0, 160), (900.0, 160), (920.0, 160), (1000.0, 160)])
    assert report.longest_media_gap_ms() == 780.0
    # A window: only what falls in it, its bounds counting as arrivals.
    assert report.longest_media_gap_ms(0.0, 110.0) == 100.0
    assert report.longest_media_gap_ms(850.0, 1000.0) == 80.0
    assert report.longest_media_gap_ms(500.0, 850.0) == 350.0  # nothing arrived in it
    assert report.longest_media_gap_ms(start_ms=950.0) == 50.0
    assert report.longest_media_gap_ms(end_ms=1500.0) == 780.0
    assert report.longest_media_gap_ms(end_ms=2000.0) == 1000.0  # silence after the last one
    with pytest.raises(ValueError):
        report.longest_media_gap_ms(10.0, 5.0)


def test_no_gap_without_two_arrivals() -> None:
    assert _report([]).longest_media_gap_ms() == 0.0
    assert _report([(5.0, 160)]).longest_media_gap_ms() == 0.0


def test_arrivals_and_lost_audio_are_in_the_json_report() -> None:
    report = CallReport(
        "CA",
        "AC",
        media_arrivals=[(10.0, 160), (50.0, 320)],
        caller_audio_lost=[(960, 3200)],
        twilio_errors=[31903],
    )
    summary = json.loads(json.dumps(report.to_dict()))
    assert summary["media_arrivals"] == {
        "ms_bytes": [[10.0, 160], [50.0, 320]],
        "longest_gap_ms": 40.0,
    }
    assert summary["caller_audio_lost"] == {"ranges": [[960, 3200]], "ms": 280.0}
    assert summary["twilio_errors"] == [31903]


# --- signing -----------------------------------------------------------------------------

URL = "https://edge.switchboard.example/twilio/voice"
PARAMS = {"CallSid": "CA" + "1" * 32, "From": "+15005550006"}


def test_the_auth_token_signs_without_a_settings_header() -> None:
    headers = Signer("token").headers(URL, PARAMS)
    assert set(headers) == {"X-Twilio-Signature"}
    assert RequestValidator("token").validate(URL, PARAMS, headers["X-Twilio-Signature"])


@pytest.mark.parametrize("algorithm", ["HMAC_SHA256", "HMAC_SHA1", "hmac_sha256"])
def test_a_shared_key_signs_with_its_algorithm_and_says_so(algorithm: str) -> None:
    key_id = new_shared_key_id()
    signer = Signer("token", shared_key="shared-secret", shared_key_id=key_id, algorithm=algorithm)
    headers = signer.headers(URL, PARAMS)
    assert headers[SETTINGS_HEADER] == f"key={key_id},algorithm={algorithm}"
    signature = headers["X-Twilio-Signature"]
    assert RequestValidator("shared-secret").validate(URL, PARAMS, signature, algorithm)
    keys = SigningKeys(auth_tokens=("token",), shared_keys=("shared-secret",))
    pairs = list(PARAMS.items())
    assert check_signature(keys, URL, pairs, signature, headers[SETTINGS_HEADER]).ok
    # Without the header, the edge would check the auth token, and refuse.
    assert not check_signature(keys, URL, pairs, signature, None).ok


def test_shared_key_ids_look_like_twilios() -> None:
    key_id = new_shared_key_id()
    assert key_id.startswith("webhooks_sharedkey_") and len(key_id) == 19 + 26
    assert key_id != new_shared_key_id()


def test_an_unknown_algorithm_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="HMAC_MD5"):
        Signer("token", shared_key="s", algorithm="HMAC_MD5")
