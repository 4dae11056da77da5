"""Who serves a call (its lease) and whether that worker still runs (its alive key).

- A call's lease (``Keys.lease``) holds the id of the worker serving it, with a PX TTL that the
  worker's heartbeat renews for all its calls in one script call per slot group, so one on a
  single Redis (``renew_lease_status``: a lease Redis lost is taken back, one held by another
  owner is reported lost). Every write a
  worker makes toward a caller is fenced by it (``BatchWriter.fenced_xadd``).
- A worker's alive key (``Keys.alive``) is one key per worker with a short TTL, renewed by one
  SET every WORKER_ALIVE_INTERVAL_MS however many calls the worker holds. An edge that finds it
  gone for a worker holding some of its calls revokes those calls' leases (``revoke_leases``)
  and puts the calls back in line: a dead or frozen worker loses its calls within about the
  alive TTL, without waiting for each lease to lapse.
- A revoked lease holds ``revoked <worker id>`` (worker ids have no spaces) until the next
  worker takes it (``acquire_lease``). Meanwhile nobody owns the call: the old owner's fenced
  writes are refused and its next renewal reports the lease lost.

Each script touches one key. A worker's alive key is read by the edge, never inside a script
with a call's lease: the two need not live on the same Redis node.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum

import redis.asyncio as aioredis

from shared.keys import by_hash_tag

__all__ = [
    "REVOKED_PREFIX",
    "LeaseStatus",
    "acquire_lease",
    "lease_holder",
    "release_lease",
    "renew_lease_status",
    "revoke_leases",
    "set_alive",
    "workers_alive",
]

#: What a revoked lease holds, followed by the id of the worker it was taken from.
REVOKED_PREFIX = "revoked "
_ALIVE_VALUE = b"1"

# ARGV: owner, ttl, the revoked prefix. Free, or revoked by an edge: taken (1); held: 0.
_ACQUIRE_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder and string.sub(holder, 1, #ARGV[3]) ~= ARGV[3] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
# Per key: 1 renewed, 2 re-acquired (the key was missing: Redis restarted empty, or the lease
# lapsed and nobody took it), 0 lost (another owner holds it, or an edge revoked it).
_RENEW_LEASES = """
local renewed = {}
for i, key in ipairs(KEYS) do
  local holder = redis.call('GET', key)
  if holder == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    renewed[i] = 1
  elseif not holder then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
    renewed[i] = 2
  else
    renewed[i] = 0
  end
end
return renewed
"""
_RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# ARGV: the owner it is taken from, the revoked marker, its ttl. Only from that owner: 1 done.
_REVOKE_LEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""


class LeaseStatus(IntEnum):
    """What ``renew_lease_status`` found for one lease."""

    LOST = 0  # another owner holds it, or an edge revoked it
    RENEWED = 1
    REACQUIRED = 2  # it was missing (Redis restarted empty, or it lapsed unclaimed): taken again


async def acquire_lease(client: aioredis.Redis, key: str, owner: str, ttl_ms: int) -> bool:
    """Take the lease if nobody holds it (a revoked lease is nobody's). True when ``owner``
    now holds it; False when anyone holds it, ``owner`` included."""
    return bool(await client.eval(_ACQUIRE_LEASE, 1, key, owner, ttl_ms, REVOKED_PREFIX))


async def renew_lease_status(
    client: aioredis.Redis,
    keys: Sequence[str],
    owner: str,
    ttl_ms: int,
    *,
    alive_key: str | None = None,
    alive_ttl_ms: int = 0,
) -> list[LeaseStatus]:
    """Extend each lease held by ``owner``, take back each missing one; LOST where another
    owner holds it or it was revoked.

    ``alive_key``: the owner's alive key, set first in the same round trip. A lease taken back
    after Redis restarted empty is then never in Redis without the alive key that vouches for
    it, which an edge would take for a dead worker.
    """
    # One script per slot group: a script's keys must share a slot on a cluster. On one Redis
    # the keys are untagged, so they form one group and one script, as ever.
    groups = by_hash_tag(keys)
    if alive_key is None and not groups:
        return []
    async with client.pipeline(transaction=False) as pipe:
        if alive_key is not None:
            pipe.set(alive_key, _ALIVE_VALUE, px=alive_ttl_ms)
        for group in groups:
            pipe.eval(_RENEW_LEASES, len(group), *(keys[i] for i in group), owner, ttl_ms)
        results = await pipe.execute()
    flags: list[int] = [0] * len(keys)
    for group, group_flags in zip(groups, results[alive_key is not None :], strict=True):
        for index, flag in zip(group, group_flags, strict=True):
            flags[index] = int(flag)
    return [LeaseStatus(int(flag)) for flag in flags]


async def release_lease(client: aioredis.Redis, key: str, owner: str) -> None:
    """Give the lease up if ``owner`` still holds it."""
    await client.eval(_RELEASE_LEASE, 1, key, owner)


def lease_holder(raw: bytes | str | None) -> str | None:
    """The worker a lease's value names; None when the lease is missing or revoked."""
    if raw is None:
        return None
    holder = raw.decode() if isinstance(raw, bytes) else raw
    return None if holder.startswith(REVOKED_PREFIX) else holder


async def revoke_leases(
    client: aioredis.Redis, leases: Sequence[tuple[str, str]], ttl_ms: int
) -> list[bool]:
    """Take each (lease key, owner) from that owner, in one round trip: True where it was
    revoked, False where the owner no longer held it (another worker took it, or it lapsed).

    The revoked lease lasts ``ttl_ms``: while the call waits for its next worker, the old one
    stays fenced off.
    """
    if not leases:
        return []
    async with client.pipeline(transaction=False) as pipe:
        for key, owner in leases:
            pipe.eval(_REVOKE_LEASE, 1, key, owner, REVOKED_PREFIX + owner, ttl_ms)
        results = await pipe.execute()
    return [bool(result) for result in results]


async def set_alive(client: aioredis.Redis, key: str, ttl_ms: int) -> None:
    """Renew a worker's alive key: one SET, whatever the number of its calls."""
    await client.set(key, _ALIVE_VALUE, px=ttl_ms)


async def workers_alive(client: aioredis.Redis, keys: Sequence[str]) -> list[bool]:
    """Whether each alive key exists, in one round trip (one EXISTS per worker, not per
    call)."""
    if not keys:
        return []
    async with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.exists(key)
        results = await pipe.execute()
    return [bool(result) for result in results]
