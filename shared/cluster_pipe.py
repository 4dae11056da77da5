"""The frame path's connection to a Redis Cluster: ``RespPipe``'s two calls, routed by slot.

A cluster serves each hash slot from one primary. ``ClusterPipe`` keeps one lean
``RespPipe`` per primary it has spoken to and splits each batch by the primary of each command's
key, sending the parts at once; replies come back in the batch's order. Commands of one call
share a slot (``shared.keys``: slot groups), so they reach one primary in their queued order.

The slot map is redis-py's (the process's control client, a ``RedisCluster``, keeps it). A
command answered ``MOVED`` (its slot has a new owner: a migration finished, a replica was
promoted) is sent again where the map, refreshed, says; one answered ``ASK`` (its slot is being
migrated) goes once to the node named, behind ``ASKING``. A primary that cannot be reached
fails only its own commands, which come back as exceptions in their places: ``BatchWriter``
sends those, and only those, again; until its next attempt is due, its commands are refused at
once (``NodeDown``), so the other primaries' traffic never waits on it. Keyless commands
(``SCRIPT LOAD``) go first to every primary the batch reaches, since each keeps its own script
cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import redis.exceptions
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from shared.backoff import Backoff
from shared.errors import TRANSIENT_REPLIES
from shared.resp import (
    FRAME_RETRY_MAX_S,
    Command,
    Entry,
    RespPipe,
    parse_xread,
    xread_command,
)

__all__ = ["MAX_REDIRECTS", "ClusterPipe", "NodeDown", "command_key", "node_url"]

logger = logging.getLogger(__name__)

#: Redirections followed for one command within one ``execute`` before it is left to the
#: caller's retry (a slot moving again and again while a cluster reshards).
MAX_REDIRECTS = 5

Node = tuple[str, int]

_SCRIPTS = frozenset({b"EVAL", b"EVALSHA", b"EVAL_RO", b"EVALSHA_RO"})


def command_key(args: Command) -> str | bytes | None:
    """The key that decides where ``args`` runs: the first key of a script, the first stream
    of an ``XREAD``, the first argument of the commands the frame path sends; None for a
    keyless command (``SCRIPT LOAD``, ``ASKING``)."""
    name = str(args[0]).upper().encode()
    if name in _SCRIPTS:
        return _as_key(args[3]) if int(str(args[2])) > 0 else None
    if name in (b"XREAD", b"XREADGROUP"):
        return _as_key(args[args.index("STREAMS") + 1])  # as ``xread_command`` spells it
    if name in (b"SCRIPT", b"ASKING", b"PING"):
        return None
    return _as_key(args[1])


def _as_key(arg: object) -> str | bytes:
    return arg if isinstance(arg, bytes) else str(arg)


def node_url(url: str, host: str, port: int) -> str:
    """``url`` (its scheme, credentials and options) pointed at ``host``:``port``."""
    parts = urlsplit(url)
    credentials = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    address = f"[{host}]" if ":" in host else host
    return parts._replace(netloc=f"{credentials}{address}:{port}").geturl()


def _flux(reply: object) -> tuple[str, str] | None:
    """(the word, the rest) of a transient error reply: ``MOVED``/``ASK`` (a redirection), or
    a node that cannot serve now (``CLUSTERDOWN``, ``TRYAGAIN``, ``LOADING``…); None for any
    other reply."""
    if not isinstance(reply, redis.exceptions.ResponseError):
        return None
    text = str(reply)
    if not text.startswith(TRANSIENT_REPLIES):
        return None
    word, _, rest = text.partition(" ")
    return word, rest


def _redirected_to(rest: str) -> Node:
    """The node a ``MOVED``/``ASK`` reply names (``<slot> <host>:<port>``)."""
    host, _, port = rest.partition(" ")[2].rpartition(":")
    return host.strip("[]"), int(port)


class ClusterPipe:
    """``RespPipe``'s ``execute`` and ``xread`` over a cluster. Not safe for concurrent
    callers, like ``RespPipe``: a blocking read needs a ``ClusterPipe`` of its own."""

    def __init__(self, url: str, cluster: RedisCluster, **pipe_options: Any) -> None:
        """``cluster``: the process's control client (its slot map is shared); ``pipe_options``
        as ``RespPipe`` takes them, for every node's connection."""
        self._url = url
        self._cluster = cluster
        self._pipe_options = pipe_options
        self._pipes: dict[Node, RespPipe] = {}
        self._stale = False  # the slot map needs a refresh before the next send
        self._down: dict[Node, _Down] = {}  # primaries that failed, until their next attempt
        self._map_unreadable = False

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """Send ``commands``, each to the primary of its slot; their replies, in order (a
        command that could not be delivered has the exception in its place)."""
        if not commands:
            return []
        replies: list[Any] = [None] * len(commands)
        keys = [command_key(args) for args in commands]
        keyless = [i for i, key in enumerate(keys) if key is None]
        todo = [i for i, key in enumerate(keys) if key is not None]
        asked: dict[int, Node] = {}
        for _ in range(MAX_REDIRECTS + 1):
            await self._refresh_if_stale()
            plan: dict[Node, list[int]] = {}
            for i in todo:
                node = asked.get(i) or self._node_of(keys[i])  # type: ignore[arg-type]
                plan.setdefault(node, []).append(i)
            if not plan:  # only keyless commands: any primary answers them
                plan[self._node_of(b"")] = []
            sent = await asyncio.gather(
                *(self._send(node, commands, keyless, part, asked) for node, part in plan.items())
            )
            for i, reply in zip(keyless, sent[0][0], strict=True):
                replies[i] = reply
            todo, asked, unserved = [], {}, set()
            for (_, keyed), (node, part) in zip(sent, plan.items(), strict=True):
                for i, reply in zip(part, keyed, strict=True):
                    replies[i] = reply
                    if (flux := _flux(reply)) is None:
                        continue
                    word, rest = flux
                    if word not in ("ASK", "MOVED"):  # it cannot serve now: its next attempt
                        unserved.add(node)
                        continue
                    target = _redirected_to(rest)
                    if word == "ASK":  # the slot is moving: this command only goes there
                        asked[i] = target
                    else:  # the slot has moved: the map is out of date
                        self._stale = True
                    todo.append(i)
                    logger.debug("%s to %s: %s to %s", commands[i][0], node, word, target)
            for node in unserved:
                self._node_failed(node)
            if not todo:
                break
            todo.sort()  # the batch's order, within each node
        return replies

    @property
    def reachable(self) -> bool:
        """Some primary is connected and serving: failed commands belong to the primaries
        that are not (refused at once until their next attempt), and newer writes to the
        others can go."""
        return not self._map_unreadable and any(node not in self._down for node in self._pipes)

    async def xread(
        self, streams: dict[str, bytes | str], *, count: int, block_ms: int
    ) -> list[tuple[bytes, list[Entry]]]:
        """A blocking ``XREAD`` of streams that share one slot, on that slot's primary."""
        return parse_xread(await self.execute([xread_command(streams, count, block_ms)]))

    async def aclose(self) -> None:
        pipes, self._pipes = list(self._pipes.values()), {}
        for pipe in pipes:
            await pipe.aclose()

    async def _refresh_if_stale(self) -> None:
        manager = self._cluster.nodes_manager
        if not self._stale and manager.slots_cache:
            return
        try:
            await manager.initialize()
        except redis.exceptions.RedisError as exc:
            # The cluster is in flux (a primary just died): the caller retries with backoff.
            self._map_unreadable = True
            raise redis.exceptions.ConnectionError(
                f"cannot read the cluster's slots: {exc}"
            ) from None
        self._map_unreadable = False
        self._stale = False

    def _node_of(self, key: str | bytes) -> Node:
        node = self._cluster.nodes_manager.get_node_from_slot(key_slot(_encoded(key)))
        return node.host, int(node.port)

    def _pipe(self, node: Node) -> RespPipe:
        pipe = self._pipes.get(node)
        if pipe is None:
            pipe = self._pipes[node] = RespPipe(node_url(self._url, *node), **self._pipe_options)
        return pipe

    async def _send(
        self,
        node: Node,
        commands: Sequence[Command],
        keyless: list[int],
        part: list[int],
        asked: dict[int, Node],
    ) -> tuple[list[Any], list[Any]]:
        """The keyless commands' replies and ``part``'s, from ``node``; a node that fails
        gives its exception for each."""
        wire: list[Command] = [commands[i] for i in keyless]
        positions: list[int] = []  # where each of part's replies is in the node's replies
        for i in part:
            if i in asked:
                wire.append(("ASKING",))
            positions.append(len(wire))
            wire.append(commands[i])
        down = self._down.get(node)
        loop = asyncio.get_running_loop()
        if down is not None and loop.time() < down.retry_at:
            # Failed a moment ago: refused at once, so that one unreachable primary never
            # holds up the others' batches with a connection attempt each.
            refused = NodeDown(f"Redis primary {node[0]}:{node[1]} unreachable; retrying soon")
            return [refused] * len(keyless), [refused] * len(part)
        try:
            got = await self._pipe(node).execute(wire)
        except redis.exceptions.AuthenticationError:
            raise  # a wrong password stays wrong on every node
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            # The node is gone or stuck: its slots may have a new owner by the next attempt.
            self._node_failed(node)
            with contextlib.suppress(Exception):
                await self._pipes.pop(node).aclose()
            return [exc] * len(keyless), [exc] * len(part)
        self._down.pop(node, None)  # it answered (``execute`` judges what it said)
        return got[: len(keyless)], [got[p] for p in positions]

    def _node_failed(self, node: Node) -> None:
        """``node`` cannot serve now: its slots may have a new owner by its next attempt,
        which its backoff puts off; meanwhile its commands are refused at once."""
        self._stale = True
        down = self._down.setdefault(node, _Down())
        down.retry_at = asyncio.get_running_loop().time() + down.backoff.next_delay()


class NodeDown(redis.exceptions.ConnectionError):
    """A primary's commands refused without an attempt: it failed a moment ago, and its next
    attempt is not due yet (the same backoff as the frame path's)."""


@dataclass(slots=True)
class _Down:
    backoff: Backoff = field(default_factory=lambda: Backoff(maximum=FRAME_RETRY_MAX_S))
    retry_at: float = 0.0


def _encoded(key: str | bytes) -> bytes:
    return key if isinstance(key, bytes) else key.encode()
