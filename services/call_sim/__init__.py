"""The call simulator: Twilio's side of a phone call, played against a running edge.

``place_call(CallConfig(...))`` posts the signed inbound-call webhook, follows the TwiML,
streams the caller's audio over a signed Media Streams socket at real-time pace, plays what the
edge sends back through a model of Twilio's playout buffer (echoing marks, honouring ``clear``)
and checks every message the edge sends against what Twilio accepts. ``python -m
services.call_sim --help`` runs it from a shell.

Outbound calls: ``services.call_sim.twilio_api`` stands in for Twilio's REST API (create a
call), and places each call it creates against the app the same way (``outbound.py``).
"""

from services.call_sim.call import caller_frames
from services.call_sim.placing import place_call, place_calls
from services.call_sim.report import ASSET_AUDIO, CallConfig, CallFailed, CallReport, Timings

__all__ = [
    "ASSET_AUDIO",
    "CallConfig",
    "CallFailed",
    "CallReport",
    "Timings",
    "caller_frames",
    "place_call",
    "place_calls",
]
