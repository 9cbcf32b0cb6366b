"""A real Confluent-compatible Schema Registry for the registry tests: ``SCHEMA_REGISTRY_URL`` if
set, else a private local Apicurio Registry (``parley.registry_local``: cached, a few seconds to
start) on a free port, stopped when the session ends, so that test runs sharing a machine never
stop or fill each other's registry. With ``CI=true`` a registry that cannot be had fails the run
instead of skipping.

Test modules import the fixture: ``from tests.schema_registry import schema_registry_url``.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from parley import registry_local
from parley.settings import BrokerSettings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def schema_registry_url() -> Iterator[str]:
    """The Confluent-compatible API of a real registry for this test session."""
    if os.environ.get("SCHEMA_REGISTRY_URL"):
        yield os.environ["SCHEMA_REGISTRY_URL"]
        return
    server = registry_local.RegistryServer(cache_dir=BrokerSettings().cache_dir, port=_free_port())
    try:
        registry_local.up(server)
    except Exception as e:  # no JDK/Maven, no Maven Central, or the registry did not start
        registry_local.down(server)
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and no Schema Registry could be started: {e}", pytrace=False)
        pytest.skip(f"no Schema Registry: {e}")
    try:
        yield server.url
    finally:
        registry_local.down(server)
        shutil.rmtree(server.home, ignore_errors=True)


def registry_config(url: str, prefix: str | None = None) -> SimpleNamespace:
    """What ``codec_for`` reads of the Kafka settings, for a test's own subjects."""
    return SimpleNamespace(schema_registry_url=url, schema_registry_auth=None,
                           topic_prefix=prefix if prefix is not None else f"r{uuid.uuid4().hex[:10]}.")
