"""Twilio's playout buffer: moved to ``shared/playout.py`` (the edge mirrors it to record what
the caller heard); re-exported here for the simulator's modules."""

from __future__ import annotations

from shared.playout import Playback, Played

__all__ = ["Playback", "Played"]
