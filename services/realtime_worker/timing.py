"""The fixed durations of a call on a worker, in one place; tests pass shorter ones.

What operators tune is configuration (``WorkerSettings``); these are the rhythm of the code
itself, each with the reason for its value.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CallTiming"]


@dataclass(frozen=True, slots=True)
class CallTiming:
    # How often the watchdog looks at the edge's silence, the stream's arrival and the caps.
    watchdog_interval_s: float = 0.25
    # Longest wait at the end of a call for its last Redis writes (record, lease release).
    cleanup_timeout_s: float = 2.0
    # A rollover keeps the old session this long for its last events, already on their way.
    rollover_drain_s: float = 0.25
    # After a rollover could not open a new session, the call keeps the old one this long.
    rollover_retry_s: float = 5.0
    # Longest wait for a pause before rolling over anyway (the server's own cap would cut
    # the call): the shorter of these seconds and this fraction of SESSION_MAX.
    rollover_force_max_s: float = 60.0
    rollover_force_fraction: float = 0.2
    # With interrupt_response the server cancels an interrupted reply itself; only if it has
    # not within this long does the worker send response.cancel.
    cancel_grace_s: float = 0.5
    # A response.cancel is answered by response.done a little later, and a response.create
    # before it would be refused: the longest wait for it.
    cancel_wait_s: float = 2.0
    # Longest wait for a goodbye to be said and heard before hanging up anyway.
    wrap_up_timeout_s: float = 30.0
    # Reconnects after a dropped session: the first of a quiet spell goes at once, give or take
    # this jitter; later ones back off from the initial delay, doubling, up to the maximum.
    reconnect_first_jitter_s: float = 0.05
    reconnect_backoff_initial_s: float = 0.5
    reconnect_backoff_max_s: float = 4.0
