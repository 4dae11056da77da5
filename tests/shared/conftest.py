"""fakeredis for the shared tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import fakeredis
import pytest
from fakeredis.aioredis import FakeRedis

from tests.support.fake_redis import polling_client


@pytest.fixture
def redis_server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
async def redis(redis_server: fakeredis.FakeServer) -> AsyncIterator[FakeRedis]:
    client = polling_client(redis_server)
    yield client
    await client.aclose()
