"""Twilio's side of a call by hand, for end-to-end tests that send what the call simulator
never would: the signed webhook, the stream upgrade, and raw Media Streams messages."""

from __future__ import annotations

import asyncio
import json
import secrets
import xml.etree.ElementTree as ET

import httpx
import pytest
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from services.devstack import DEMO_AUTH_TOKEN, PUBLIC_URL, Stack

__all__ = [
    "MEDIA_URL",
    "VALIDATOR",
    "answer_call",
    "closed_code",
    "media_message",
    "signed",
    "start_message",
    "ws_url",
]

MEDIA_URL = PUBLIC_URL.replace("https://", "wss://") + "/twilio/media"
VALIDATOR = RequestValidator(DEMO_AUTH_TOKEN)


async def answer_call(stack: Stack, call_sid: str) -> str:
    """Post a signed inbound-call webhook like Twilio; the stream token from the TwiML."""
    params = {
        "CallSid": call_sid,
        "AccountSid": "AC" + secrets.token_hex(16),
        "From": "+15550100",
        "To": "+15550199",
        "CallStatus": "ringing",
        "Direction": "inbound",
    }
    signature = VALIDATOR.compute_signature(PUBLIC_URL + "/twilio/voice", params)
    async with httpx.AsyncClient() as client:
        response = await client.post(
            stack.edge_urls[0] + "/twilio/voice",
            data=params,
            headers={"X-Twilio-Signature": signature},
        )
    response.raise_for_status()
    parameter = ET.fromstring(response.text).find("./Connect/Stream/Parameter[@name='token']")
    assert parameter is not None, response.text
    return parameter.attrib["value"]


def ws_url(stack: Stack) -> str:
    """The first edge's Media Streams URL, as the test reaches it."""
    return stack.edge_urls[0].replace("http://", "ws://") + "/twilio/media"


def signed() -> dict[str, str]:
    """The headers of a stream upgrade signed as Twilio signs it."""
    return {"X-Twilio-Signature": VALIDATOR.compute_signature(MEDIA_URL, {})}


def start_message(call_sid: str, stream_sid: str, token: str) -> str:
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": stream_sid,
            "start": {
                "accountSid": "AC" + "0" * 32,
                "streamSid": stream_sid,
                "callSid": call_sid,
                "tracks": ["inbound"],
                "customParameters": {"token": token},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        }
    )


def media_message(stream_sid: str, payload: str, seq: int) -> str:
    return json.dumps(
        {
            "event": "media",
            "sequenceNumber": str(seq),
            "streamSid": stream_sid,
            "media": {"track": "inbound", "chunk": str(seq), "timestamp": "0", "payload": payload},
        }
    )


async def closed_code(ws: ClientConnection) -> int | None:
    """Read (and discard) until the edge closes the socket; its close code."""
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(10):
            while True:
                await ws.recv()
    return ws.close_code
