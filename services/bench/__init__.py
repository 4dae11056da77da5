"""``python -m services.bench``: what the split bridge costs, measured against a direct relay.

A load generator places C concurrent simulated calls from one asyncio process against (a) the
split stack (edge, workers, real Redis) and (b) a minimal single-process relay, both talking to
the realtime simulator in echo mode. Every 160-byte frame carries its call index and sequence
number, so each one's round trip is timed and its bytes checked on the way back.
"""
