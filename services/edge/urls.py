"""The edge's public URLs, derived from PUBLIC_URL alone.

Twilio signs the URL it requested, and behind TLS termination or a proxy the edge cannot see
that URL; so every URL it hands out, and every URL whose signature it checks, comes from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

__all__ = [
    "AMD_PATH",
    "CALL_STATUS_PATH",
    "MEDIA_PATH",
    "RECORDING_STATUS_PATH",
    "RESUME_PATH",
    "STATUS_PATH",
    "TRANSFER_STATUS_PATH",
    "VOICE_PATH",
    "WHISPER_PATH",
    "PublicUrls",
]

VOICE_PATH = "/twilio/voice"
RESUME_PATH = "/twilio/voice/resume"
STATUS_PATH = "/twilio/stream-status"
MEDIA_PATH = "/twilio/media"
TRANSFER_STATUS_PATH = "/twilio/transfer/status"  # <Dial action>: how the transfer went
WHISPER_PATH = "/twilio/transfer/whisper"  # what the person hears first (warm transfer)
CALL_STATUS_PATH = "/twilio/outbound/status"  # an outbound call's progress (StatusCallback)
AMD_PATH = "/twilio/outbound/amd"  # who answered it (AsyncAmdStatusCallback)
RECORDING_STATUS_PATH = "/twilio/recording/status"  # Twilio's recording of a call


@dataclass(frozen=True, slots=True)
class PublicUrls:
    base: str  # e.g. https://edge.example.com or https://example.com/switchboard

    def http(self, path: str) -> str:
        return self.base + path

    def wss(self, path: str) -> str:
        """The stream URL: same host and prefix, ``wss`` (``ws`` for a plain-http test base)."""
        parts = urlsplit(self.base)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return parts._replace(scheme=scheme).geturl() + path

    @property
    def voice(self) -> str:
        return self.http(VOICE_PATH)

    @property
    def resume(self) -> str:
        return self.http(RESUME_PATH)

    @property
    def status(self) -> str:
        return self.http(STATUS_PATH)

    @property
    def media(self) -> str:
        return self.wss(MEDIA_PATH)

    @property
    def transfer_status(self) -> str:
        return self.http(TRANSFER_STATUS_PATH)

    @property
    def call_status(self) -> str:
        return self.http(CALL_STATUS_PATH)

    @property
    def amd(self) -> str:
        return self.http(AMD_PATH)

    @property
    def recording_status(self) -> str:
        return self.http(RECORDING_STATUS_PATH)

    def whisper(self, call_sid: str) -> str:
        """The whisper URL of one call: Twilio requests it for the person's leg, whose own
        CallSid is not the caller's; the query names the caller's call (and is signed)."""
        return f"{self.http(WHISPER_PATH)}?{urlencode({'call': call_sid})}"
