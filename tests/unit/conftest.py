"""Fixtures shared by the unit tests of the HTTP services."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer


@pytest.fixture
async def client_for():
    """``await client_for(app)``: a test client of an aiohttp app, closed after the test."""
    clients: list[TestClient] = []

    async def make_client(app) -> TestClient:
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield make_client
    for c in clients:
        await c.close()
