"""The edge's watch over its calls' workers: put a call back in line when its worker died, and
give up on a call no worker takes.

A worker holds each call through a lease key it renews by heartbeat. The edge, which holds the
caller's socket, checks those leases for all its calls with one pipelined round trip per
interval. The decision for each call is a pure function of what the check saw, so the rules
can be tested without Redis or sockets:

- lease present: the call is served; remember that a worker had it;
- lease missing ``MISSING_CHECKS`` checks in a row after a worker had it (SIGKILLed worker, or
  a Redis restart the worker did not re-acquire after): dispatch the call again, once;
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

    def observe(self, lease_present: bool, now: float, dispatch_timeout_s: float) -> Action:
        """Update with one check's result; what the edge should do now."""
        if lease_present:
            action = Action.NONE if self.served else Action.SERVED
            self.served, self.misses = True, 0
            return action
        if self.served:
            self.misses += 1
            if self.misses < MISSING_CHECKS:
                return Action.NONE
            self.served, self.misses, self.waiting_since = False, 0, now
            return Action.REDISPATCH
        if now - self.waiting_since >= dispatch_timeout_s:
            return Action.GIVE_UP
        return Action.NONE
