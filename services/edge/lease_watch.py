"""The edge's watch over its calls' workers: put a call back in line when its worker died, and
give up on a call no worker takes.

A worker holds each call through a lease key it renews by heartbeat, and shows that it runs
through one alive key of its own with a short TTL. The edge, which holds the caller's socket,
runs two checks, each one pipelined round trip for all its calls:

- every LEASE_CHECK_INTERVAL_MS, each call's lease: who holds it (one read per call);
- every WORKER_CHECK_INTERVAL_MS, the alive key of each worker holding some of its calls (one
  read per worker). A worker whose key is gone (SIGKILLed, frozen, its loop stuck) has its
  calls' leases revoked, and each revoked call is dispatched again at once.

The decision for each call is a pure function of what the checks saw, so the rules can be
tested without Redis or sockets:

- lease held: the call is served; remember by whom;
- the holder's alive key gone and its lease revoked: dispatch the call again, once;
- lease missing ``MISSING_CHECKS`` checks in a row after a worker had it (a Redis restart the
  worker did not re-acquire after): dispatch the call again, once;
- no worker for ``dispatch_timeout_s`` since the call was (re-)dispatched: end the stream so
  Twilio follows the TwiML ``<Redirect>`` and the caller hears the busy message.

A call record missing altogether means Redis restarted empty: the edge writes back what it
knows (state, edge, stream) so resume and the workers find the call again.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["MISSING_CHECKS", "Action", "LeaseView"]

#: A lease must be missing on this many consecutive checks before the call is re-dispatched:
#: one miss may be a worker renewing a lease Redis lost a moment ago.
MISSING_CHECKS = 3


class Action(Enum):
    NONE = "none"
    SERVED = "served"  # a worker holds the call now, after it waited since ``waiting_since``
    REDISPATCH = "redispatch"
    GIVE_UP = "give_up"


@dataclass
class LeaseView:
    """What the edge remembers about one call's lease between checks."""

    waiting_since: float  # when the call last went into the dispatch line (monotonic s)
    served: bool = False  # a worker held the lease at the last check
    misses: int = 0
    holder: str | None = None  # the worker that held it at the last check, while served

    def observe(self, holder: str | None, now: float, dispatch_timeout_s: float) -> Action:
        """Update with one lease check's result (``holder``: the worker holding the lease;
        None when it is missing or revoked); what the edge should do now."""
        if holder is not None:
            action = Action.NONE if self.served else Action.SERVED
            self.served, self.misses, self.holder = True, 0, holder
            return action
        if self.served:
            self.misses += 1
            if self.misses < MISSING_CHECKS:
                return Action.NONE
            self._back_in_line(now)
            return Action.REDISPATCH
        if now - self.waiting_since >= dispatch_timeout_s:
            return Action.GIVE_UP
        return Action.NONE

    def worker_gone(self, worker: str, revoked: bool, now: float) -> Action:
        """``worker``'s alive key was gone; ``revoked``: the edge took the lease from it (False:
        it no longer held the lease, and the next lease check tells who does)."""
        if worker != self.holder:
            return Action.NONE  # a lease check saw another holder meanwhile
        if not revoked:
            self.holder = None
            return Action.NONE
        self._back_in_line(now)
        return Action.REDISPATCH

    def _back_in_line(self, now: float) -> None:
        self.served, self.misses, self.holder, self.waiting_since = False, 0, None, now
