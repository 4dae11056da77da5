"""The edge's tests run its app on fakeredis (``tests.support.edge_app``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.edge_app import Edge, make_settings, running_edge


@pytest.fixture
def edge() -> Iterator[Edge]:
    with running_edge(make_settings()) as running:
        yield running
