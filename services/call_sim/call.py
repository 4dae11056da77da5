"""A whole simulated call, as Twilio's voice engine would place it against an edge.

The signed inbound-call webhook, the TwiML it returns, the ``<Connect><Stream>`` socket (see
``stream.py``), then whatever follows the stream's end: ``<Connect action>`` or the next verb,
typically a ``<Redirect>`` that reconnects a call whose edge went away, until ``<Hangup/>``,
the end of the document, or the caller hanging up after its audio and hold time. A stream the
edge drops without a close frame goes on the same way only with ``abrupt_drop="continue"``;
by default it ends the call with Twilio's error 31903 (``stream_end.py``). A ``<Dial>`` rings the
simulated callee (``dialing.py``), then requests its ``action`` (with DialCallStatus and the
rest) and follows the answer, or goes on with the next verb when it has none.
``<Start><Recording>`` and ``<Stop><Recording>`` drive the call's recordings (``recorder.py``).

A call the REST API created (``outbound.py``) runs the same machinery: its first document comes
from its ``Url`` (or inline ``Twiml``) instead of the number's voice webhook (``FirstDocument``),
and its party's frames are passed in.

Failures (a refused webhook, an unreachable edge, a timeout) end the call and are recorded in
``CallReport.error``; protocol faults are listed in ``CallReport.protocol_violations``. Neither
raises unless ``CallConfig.strict`` is set.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlencode, urlsplit

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

from services.call_sim.caller_audio import Outgoing, caller_frames
from services.call_sim.dialing import DialContext, run_dial
from services.call_sim.playback import Played
from services.call_sim.recorder import CallRecorder, Placed
from services.call_sim.report import (
    CallbackRecord,
    CallConfig,
    CallReport,
    DialRecord,
    StreamAudio,
)
from services.call_sim.routing import EdgeRing, new_sid, to_edge
from services.call_sim.signing import Signer
from services.call_sim.stream import CallTally, StreamSession
from services.call_sim.stream_end import (
    BROKEN_PIPE,
    AfterStream,
    StreamOutcome,
    after_stream,
)
from services.call_sim.twiml import (
    Connect,
    Dial,
    Hangup,
    Pause,
    Redirect,
    Reject,
    Say,
    StartRecording,
    StartStream,
    StopRecording,
    Stream,
    TwimlDocument,
    TwimlError,
    UnknownVerb,
    parse_twiml,
    verb_names,
)
from shared.audio import FRAME_BYTES

__all__ = ["FirstDocument", "caller_frames", "drive"]

logger = logging.getLogger("switchboard.call_sim")

WEBHOOK_USER_AGENT = "TwilioProxy/1.1"
STREAM_USER_AGENT = "Twilio.TmeWs/1.0"
MAX_TWIML_BYTES = 64 * 1024
MAX_EDGE_MESSAGE_BYTES = 1 << 20  # Twilio documents no limit; this only bounds a runaway edge
TIMEOUT_MARGIN_S = 30.0
TWILIO_API = "https://api.twilio.com"  # where recordings are said to be (RecordingUrl)


class _CallError(Exception):
    """The call cannot go on; the message becomes ``CallReport.error``, and ``twilio_error``
    (the code Twilio would log for it, if any) goes to ``CallReport.twilio_errors``."""

    def __init__(
        self, message: str, twilio_error: int | None = None, http_status: int | None = None
    ) -> None:
        super().__init__(message)
        self.twilio_error = twilio_error
        self.http_status = http_status  # the refusing answer's status, if that was the cause


@dataclass(frozen=True, slots=True)
class _Next:
    """The next document to request: a ``<Redirect>``, a ``<Connect action>`` or a ``<Dial
    action>`` (which adds ``params`` to the caller's and names its ``dial``)."""

    url: str
    method: str
    params: dict[str, str] = field(default_factory=dict)
    dial: DialRecord | None = None


@dataclass(frozen=True, slots=True)
class FirstDocument:
    """Where the call's first TwiML comes from: ``url`` requested with ``method``, CallStatus
    ``status`` and ``params`` on top of the call's own fields, and ``fallback_url`` (with
    ErrorCode and ErrorUrl) if that fails; or the inline ``twiml``."""

    url: str | None = None
    method: str = "POST"
    status: str = "ringing"
    params: dict[str, str] = field(default_factory=dict)
    fallback_url: str | None = None
    fallback_method: str = "POST"
    twiml: str | None = None


class _Call:
    def __init__(
        self,
        config: CallConfig,
        audio: bytes,
        http: httpx.AsyncClient,
        *,
        frames: list[bytes] | None = None,
        api_base_url: str = TWILIO_API,
    ) -> None:
        self.config = config
        self.http = http
        self.ring = EdgeRing(config.edge_urls)
        self.signer = Signer(
            config.auth_token,
            config.shared_key,
            config.shared_key_id,
            config.signature_algorithm,
        )
        self.loop = asyncio.get_running_loop()
        self.report = CallReport(
            call_sid=config.call_sid or new_sid("CA"),
            account_sid=config.account_sid or new_sid("AC"),
        )
        self.outgoing = Outgoing(caller_frames(audio, config.hold_s) if frames is None else frames)
        self.tally = CallTally(origin=self.loop.time())
        self.recorder = CallRecorder(
            api_base_url=api_base_url,
            account_sid=self.report.account_sid,
            call_sid=self.report.call_sid,
            send=self.callback,
        )

    def now_ms(self) -> float:
        """The call's clock: ms since it began."""
        return (self.loop.time() - self.tally.origin) * 1000

    # --- the verbs ----------------------------------------------------------------------

    async def run(self, first: FirstDocument | None = None) -> None:
        config = self.config
        if first is None:
            first = FirstDocument(config.public_url.rstrip("/") + config.voice_path)
        document = await self._first(first)
        followed = 0
        while True:
            step = await self._execute(document)
            if step is None:
                return
            if followed >= config.max_redirects:
                raise _CallError(f"more than {config.max_redirects} redirects")
            followed += 1
            if step.dial is None:
                self.report.redirects.append(step.url)
            document = await self._follow(step)

    async def _first(self, first: FirstDocument) -> TwimlDocument:
        if first.twiml is not None:
            self.report.twiml.append(first.twiml)
            try:
                return parse_twiml(first.twiml)
            except TwimlError as exc:  # 12100: Document parse failure
                raise _CallError(f"the call's Twiml: {exc}", 12100) from exc
        if first.url is None:
            raise ValueError("a first document needs a url or twiml")
        params = {**self._params(first.status), **first.params}
        try:
            return await self._fetch_twiml(first.url, first.method, params)
        except _CallError as exc:
            if first.fallback_url is None:
                raise
            self.report.notes.append(f"{exc}: requesting the FallbackUrl")
            # 11200: HTTP retrieval failure, what Twilio tells the fallback.
            params = {**params, "ErrorCode": "11200", "ErrorUrl": first.url}
            return await self._fetch_twiml(first.fallback_url, first.fallback_method, params)

    async def _follow(self, step: _Next) -> TwimlDocument:
        params = {**self._params("in-progress"), **step.params}
        try:
            document = await self._fetch_twiml(step.url, step.method, params)
        except _CallError as exc:
            if step.dial is not None:
                step.dial.action_http_status = exc.http_status
            raise
        if step.dial is not None:
            step.dial.action_http_status = 200
            step.dial.action_answer = verb_names(document)
        return document

    async def _execute(self, document: TwimlDocument) -> _Next | None:
        """Run the verbs; the document to request next, or None when the call is over."""
        for problem in document.problems:
            self.tally.violation(f"twiml: {problem}")
        follow = self.config.follow_redirects
        for verb in document.verbs:
            if isinstance(verb, Connect):
                if verb.stream is None:
                    continue
                outcome = await self._stream(verb.stream)
                next_step = after_stream(outcome, self.config.abrupt_drop)
                if next_step is AfterStream.HUNG_UP:
                    return None
                if next_step is AfterStream.CALL_ENDS:
                    raise _CallError(
                        f"the edge dropped the stream without a close frame: Twilio error "
                        f"{BROKEN_PIPE} (Stream - WebSocket - Connection Broken Pipe); "
                        "abrupt_drop='end' reads it as the end of the call",
                        BROKEN_PIPE,
                    )
                # Twilio's own time to move on; the caller talks on meanwhile.
                await asyncio.sleep(self.config.reconnect_delay_s)
                if verb.action is not None:
                    return _Next(verb.action, verb.method) if follow else None
            elif isinstance(verb, Dial):
                record, dial_params = await self._dial(verb)
                if dial_params is None:
                    self.report.notes.append(
                        f"the simulator cannot dial <{verb.unsupported[0]}>: the call ends here"
                    )
                    return None
                if verb.action is not None:
                    return _Next(verb.action, verb.method, dial_params, record) if follow else None
                # Without an action Twilio goes on with the next verb.
            elif isinstance(verb, Redirect):
                return _Next(verb.url, verb.method) if follow else None
            elif isinstance(verb, Hangup | Reject):
                self.report.closed_by = "edge"
                return None
            elif isinstance(verb, Say):
                self.report.said.append(verb.text)
            elif isinstance(verb, StartRecording):
                self.recorder.start(verb.spec, self.now_ms())
            elif isinstance(verb, StopRecording):
                self.recorder.stop(verb.name, self.now_ms())
            elif isinstance(verb, UnknownVerb):
                self.report.notes.append(f"skipped unsupported verb <{verb.name}>")
            elif isinstance(verb, StartStream | Pause):
                pass  # listen-only streams are flagged by the parser; pauses take no time here
        return None

    # --- HTTP -----------------------------------------------------------------------------

    def _params(self, status: str) -> dict[str, str]:
        return {
            **self.config.extra_params,
            "CallSid": self.report.call_sid,
            "AccountSid": self.report.account_sid,
            "From": self.config.from_number,
            "To": self.config.to_number,
            "CallStatus": status,
            "Direction": self.config.direction,
            "ApiVersion": "2010-04-01",
        }

    async def _request(self, url: str, method: str, params: dict[str, str]) -> httpx.Response:
        """A signed request for public ``url``, sent to the current edge, or to the next ones
        while edges refuse connections. Raises ``_CallError``."""
        if method == "GET":
            # GET carries the parameters in the query, and Twilio signs the URL alone.
            url = url + ("&" if urlsplit(url).query else "?") + urlencode(params)
            headers = self.signer.headers(url, {})
        else:
            headers = self.signer.headers(url, params)
        headers["User-Agent"] = WEBHOOK_USER_AGENT
        for attempt in range(len(self.ring)):
            target = to_edge(url, self.config.public_url, self.ring.current)
            try:
                if method == "GET":
                    response = await self.http.get(target, headers=headers)
                else:
                    response = await self.http.post(target, data=params, headers=headers)
            except (
                httpx.ConnectError,
                httpx.ReadError,
                httpx.WriteError,
                httpx.RemoteProtocolError,
            ) as exc:
                # Refused, or reset before any answer (an edge dying under the request): a
                # load balancer tries the next edge; these webhooks are safe to repeat.
                if attempt + 1 < len(self.ring):
                    self.report.notes.append(f"{target} refused ({exc}); trying the next edge")
                    self.ring.rotate()
                    continue
                raise _CallError(f"{method} {url}: no edge reachable ({target}: {exc})") from exc
            except httpx.HTTPError as exc:
                raise _CallError(f"{method} {url} via {target}: {exc!r}") from exc
            return response
        raise AssertionError("unreachable: the loop returns or raises")

    async def _fetch_twiml(
        self, url: str, method: str, params: dict[str, str], *, caller: bool = True
    ) -> TwimlDocument:
        """A TwiML document for the caller's leg (timed, kept in ``report.twiml``), or with
        ``caller=False`` for the called party's (a whisper). Raises ``_CallError``."""
        label = "twiml" if caller else "whisper twiml"
        started = self.loop.time()
        response = await self._request(url, method, params)
        if caller:
            self.report.timings.webhook_ms.append((self.loop.time() - started) * 1000)
        if response.status_code != 200:
            raise _CallError(
                f"{method} {url} answered HTTP {response.status_code}: {response.text[:200]!r}",
                http_status=response.status_code,
            )
        content_type = response.headers.get("content-type", "").split(";")[0].strip()
        if content_type not in ("text/xml", "application/xml"):
            self.tally.violation(f"{label}: Content-Type {content_type!r}, not text/xml")
        if len(response.content) > MAX_TWIML_BYTES:
            raise _CallError(f"{url}: TwiML of {len(response.content)} bytes is too large")
        if caller:
            self.report.twiml.append(response.text)
        try:
            return parse_twiml(response.content, url)
        except TwimlError as exc:
            raise _CallError(f"{url}: {exc}") from exc

    async def _dial(self, dial: Dial) -> tuple[DialRecord, dict[str, str] | None]:
        """Ring the callee for ``dial``; its record, and the action's parameters (None: the
        simulator cannot ring anything in it)."""
        config, report = self.config, self.report
        noun = dial.nouns[0] if dial.nouns else None
        record = DialRecord(
            noun=noun.kind if noun is not None else None,
            address=noun.address if noun is not None else None,
            caller_id=dial.caller_id,
            from_number=dial.caller_id or config.from_number,
            timeout_s=dial.timeout_s,
            action=dial.action,
            callee=config.callee,
            after_streams=len(report.stream_sids),
        )
        report.dials.append(record)

        async def whisper(url: str, method: str, params: dict[str, str]) -> TwimlDocument:
            return await self._fetch_twiml(url, method, params, caller=False)

        context = DialContext(
            call_sid=report.call_sid,
            account_sid=report.account_sid,
            callee=config.callee,
            ring_s=config.callee_ring_s,
            talk_s=config.callee_talk_s,
            fetch=whisper,
            problem=self.tally.violation,
            note=report.notes.append,
        )
        try:
            params = await run_dial(dial, record, context)
        except _CallError as exc:
            record.error = str(exc)
            raise
        logger.info(
            "call %s: <Dial> %s %s → %s",
            report.call_sid,
            record.noun,
            record.address,
            record.dial_call_status,
        )
        return record, params

    async def callback(
        self, kind: str, event: str, url: str, method: str, params: dict[str, str]
    ) -> CallbackRecord:
        """A signed callback, best effort as Twilio's own: a failure is noted, never fatal."""
        record = CallbackRecord(kind, event, url, method, dict(params), self.now_ms())
        self.report.callbacks.append(record)
        try:
            response = await self._request(url, method, params)
        except _CallError as exc:
            record.error = str(exc)
            self.report.notes.append(f"{kind} callback {event}: {exc}")
            return record
        record.http_status = response.status_code
        if not 200 <= response.status_code < 300:
            self.report.notes.append(f"{kind} callback {event}: HTTP {response.status_code}")
        return record

    async def _status_callback(self, stream: Stream, stream_sid: str, event: str) -> None:
        if stream.status_callback is None or not self.config.status_callbacks:
            return
        params = {
            "AccountSid": self.report.account_sid,
            "CallSid": self.report.call_sid,
            "StreamSid": stream_sid,
            "StreamName": stream.name or stream_sid,
            "StreamEvent": event,
            "Timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
        await self.callback(
            "stream-status", event, stream.status_callback, stream.status_callback_method, params
        )

    # --- the stream -------------------------------------------------------------------------

    async def _open(self, stream: Stream) -> ClientConnection:
        # The upgrade is a GET without a body: Twilio signs the wss URL from the TwiML alone.
        headers = self.signer.headers(stream.url, {})
        for attempt in range(len(self.ring)):
            target = to_edge(stream.url, self.config.public_url, self.ring.current)
            started = self.loop.time()
            try:
                ws = await connect(
                    target,
                    additional_headers=headers,
                    user_agent_header=STREAM_USER_AGENT,
                    proxy=None,
                    compression=None,
                    open_timeout=self.config.http_timeout_s,
                    ping_interval=None,
                    close_timeout=5,
                    max_size=MAX_EDGE_MESSAGE_BYTES,
                    max_queue=64,
                )
            except InvalidStatus as exc:
                code = exc.response.status_code
                raise _CallError(
                    f"stream upgrade to {target} refused: HTTP {code} (31920)", 31920
                ) from exc
            except OSError as exc:
                if attempt + 1 < len(self.ring):
                    self.report.notes.append(f"{target} refused ({exc}); trying the next edge")
                    self.ring.rotate()
                    continue
                raise _CallError(
                    f"stream {stream.url}: no edge reachable (31901): {exc}", 31901
                ) from exc
            except (InvalidHandshake, TimeoutError) as exc:
                raise _CallError(
                    f"stream handshake with {target} failed (31920): {exc!r}", 31920
                ) from exc
            self.report.timings.connect_ms.append((self.loop.time() - started) * 1000)
            return ws
        raise AssertionError("unreachable: the loop returns or raises")

    async def _stream(self, stream: Stream) -> StreamOutcome:
        stream_sid = new_sid("MZ")
        try:
            ws = await self._open(stream)
        except _CallError:
            await self._status_callback(stream, stream_sid, "stream-error")
            raise
        self.report.stream_sids.append(stream_sid)
        tally = self.tally
        before = (len(tally.sent), len(tally.received), len(tally.heard))
        session = StreamSession(
            ws,
            stream_sid=stream_sid,
            call_sid=self.report.call_sid,
            account_sid=self.report.account_sid,
            parameters=stream.parameters,
            outgoing=self.outgoing,
            tally=self.tally,
            send_stop=self.config.send_stop,
            frame_bytes=self.config.frame_bytes,
            linger_s=self.config.linger_s,
            quiet_s=self.config.quiet_s,
            echo_quiet_s=self.config.echo_quiet_s,
            dtmf=self.config.dtmf if len(self.report.stream_sids) == 1 else (),
        )
        async with ws, asyncio.TaskGroup() as group:
            group.create_task(self._status_callback(stream, stream_sid, "stream-started"))
            outcome = await session.run()
        sent = bytes(tally.sent[before[0] :])
        first_frame = self.outgoing.next_index - len(sent) // FRAME_BYTES
        opened_ms = (session.opened_at - tally.origin) * 1000
        self.report.streams.append(
            StreamAudio(
                stream_sid,
                sent=sent,
                received=bytes(tally.received[before[1] :]),
                heard=bytes(tally.heard[before[2] :]),
                sent_at_ms=(self.outgoing.due_at(first_frame) - tally.origin) * 1000
                if sent
                else None,
                played=[Played(opened_ms + at_ms, audio) for at_ms, audio in session.played],
            )
        )
        self.report.closed_by = outcome.closed_by
        self.report.close_codes.append(outcome.close_code)
        if outcome.abrupt:
            self.report.twilio_errors.append(BROKEN_PIPE)
        logger.info(
            "call %s: stream %s %s by the %s (code %s)",
            self.report.call_sid,
            stream_sid,
            "dropped without a close frame" if outcome.abrupt else "closed",
            outcome.closed_by,
            outcome.close_code,
        )
        await self._status_callback(stream, stream_sid, "stream-stopped")
        return outcome

    def close_recordings(self) -> None:
        """The call is over: make its recordings from what was said and played on the line."""
        outgoing = self.outgoing
        caller = []
        if outgoing.origin is not None:
            at_ms = (outgoing.origin - self.tally.origin) * 1000
            caller.append(Placed(at_ms, b"".join(outgoing.frames)))
        played = [Placed(*segment) for stream in self.report.streams for segment in stream.played]
        self.recorder.finish(self.now_ms(), caller, played)
        self.report.recordings = list(self.recorder.recordings)

    def finish(self) -> CallReport:
        report, tally = self.report, self.tally
        report.sent_audio = bytes(tally.sent)
        report.received_audio = bytes(tally.received)
        report.heard_audio = bytes(tally.heard)
        report.marks_received = tally.marks_received
        report.marks_echoed = tally.marks_echoed
        report.clears = tally.clears
        report.protocol_violations = list(tally.violations)
        if tally.dropped_violations:
            report.protocol_violations.append(f"… and {tally.dropped_violations} more")
        report.caller_audio_lost = self.outgoing.lost_byte_ranges
        report.media_arrivals = list(tally.media_arrivals)
        report.timings.first_audio_ms = tally.first_audio_ms
        report.timings.duration_ms = (self.loop.time() - tally.origin) * 1000
        return report


async def drive(call: _Call, budget: float, first: FirstDocument | None = None) -> None:
    """Run ``call`` to its end within ``budget`` seconds, a failure recorded in its report
    rather than raised, then make its recordings (their callbacks are not sent yet)."""
    try:
        async with asyncio.timeout(budget):
            await call.run(first)
    except TimeoutError:
        call.report.error = f"the call did not end within {budget:.1f} s"
    except _CallError as exc:
        call.report.error = str(exc)
        if exc.twilio_error is not None and exc.twilio_error not in call.report.twilio_errors:
            call.report.twilio_errors.append(exc.twilio_error)
    call.close_recordings()
