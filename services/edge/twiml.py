"""The TwiML documents the edge answers with."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

__all__ = [
    "connect_stream",
    "dial",
    "hangup",
    "reject",
    "say",
    "say_and_hangup",
    "say_verb",
    "start_recording",
]

_HEAD = '<?xml version="1.0" encoding="UTF-8"?>'


def connect_stream(
    stream_url: str, token: str, resume_url: str, status_url: str, before: str = ""
) -> str:
    """A bidirectional ``<Connect><Stream>`` carrying the call's token, then a ``<Redirect>``
    that Twilio follows only if the stream ends while the call is still up (edge failover).
    ``before``: verbs Twilio runs first (``recording_notice``, ``start_recording``)."""
    return (
        f"{_HEAD}<Response>{before}<Connect><Stream url={quoteattr(stream_url)} "
        f'statusCallback={quoteattr(status_url)}><Parameter name="token" '
        f"value={quoteattr(token)}/></Stream></Connect>"
        f'<Redirect method="POST">{escape(resume_url)}</Redirect></Response>'
    )


def start_recording(status_url: str) -> str:
    """``<Start><Recording>``: Twilio records both sides, one per channel, from here to the
    end of the call (before ``<Connect>``: a recording started after it misses the stream), and
    reports the recording to ``status_url``."""
    return (
        f'<Start><Recording channels="dual" track="both" '
        f"recordingStatusCallback={quoteattr(status_url)} "
        f'recordingStatusCallbackMethod="POST" '
        f'recordingStatusCallbackEvent="in-progress completed absent"/></Start>'
    )


def say_verb(text: str) -> str:
    return f"<Say>{escape(text)}</Say>"


def hangup() -> str:
    return f"{_HEAD}<Response><Hangup/></Response>"


def say_and_hangup(text: str) -> str:
    return f"{_HEAD}<Response><Say>{escape(text)}</Say><Hangup/></Response>"


def reject() -> str:
    """Refuse the call before it is answered: the caller hears a busy tone, nothing is billed."""
    return f'{_HEAD}<Response><Reject reason="busy"/></Response>'


def dial(
    address: str, action_url: str, caller_id: str, timeout_s: int, whisper_url: str | None
) -> str:
    """``<Dial>`` the person at ``address`` (E.164 number: ``<Number>``; ``sip:`` URI:
    ``<Sip>``). ``caller_id``: the number the person sees (none: the attribute is left out).
    ``whisper_url``: TwiML the person hears on answering, before being connected (a warm
    transfer). Twilio requests ``action_url`` with the outcome when the dial ends."""
    noun = "Sip" if address.startswith(("sip:", "sips:")) else "Number"
    whisper = f' url={quoteattr(whisper_url)} method="POST"' if whisper_url is not None else ""
    # No caller id known: without the attribute Twilio passes the inbound caller's own id on
    # (its error 13214 says so); an empty one would name no number at all.
    caller = f" callerId={quoteattr(caller_id)}" if caller_id else ""
    return (
        f'{_HEAD}<Response><Dial action={quoteattr(action_url)} method="POST"'
        f'{caller} timeout="{timeout_s}">'
        f"<{noun}{whisper}>{escape(address)}</{noun}></Dial></Response>"
    )


def say(text: str) -> str:
    """Words read out, then the document ends (the whisper: the person is then connected)."""
    return f"{_HEAD}<Response><Say>{escape(text)}</Say></Response>"
