"""From the public URLs Twilio is given to the loopback edges that really serve them, and the
identifiers Twilio makes up. Pure functions: no I/O."""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit, urlunsplit

__all__ = ["EdgeRing", "new_sid", "to_edge"]


def new_sid(prefix: str) -> str:
    """A Twilio-style sid: ``prefix`` ("CA", "AC", "MZ") + 32 lowercase hex digits."""
    return prefix + secrets.token_hex(16)


def to_edge(url: str, public_url: str, edge_url: str) -> str:
    """Where a request for public ``url`` really goes: the edge's scheme and address, the same
    path (less the public URL's path prefix, which a proxy would strip) and query.

    ``wss``/``ws`` URLs map to ``ws`` for a plain-http edge and ``wss`` for an https one.
    """
    parts, public, edge = urlsplit(url), urlsplit(public_url), urlsplit(edge_url)
    path = parts.path
    prefix = public.path.rstrip("/")
    if prefix and parts.hostname == public.hostname and path.startswith(prefix + "/"):
        path = path[len(prefix) :]
    if parts.scheme in ("ws", "wss"):
        scheme = "wss" if edge.scheme == "https" else "ws"
    else:
        scheme = edge.scheme
    return urlunsplit((scheme, edge.netloc, edge.path.rstrip("/") + path, parts.query, ""))


class EdgeRing:
    """The edges behind the public URL: requests go to ``current`` until it fails."""

    def __init__(self, edge_urls: list[str]) -> None:
        if not edge_urls:
            raise ValueError("at least one edge URL is needed")
        self._urls = list(edge_urls)
        self._index = 0

    @property
    def current(self) -> str:
        return self._urls[self._index]

    def __len__(self) -> int:
        return len(self._urls)

    def rotate(self) -> str:
        """Move to the next edge (wrapping) and return it."""
        self._index = (self._index + 1) % len(self._urls)
        return self.current
