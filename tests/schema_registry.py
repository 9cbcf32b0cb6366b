"""A real Confluent-compatible Schema Registry for the registry tests, from (in order):
``SCHEMA_REGISTRY_URL``; the local Apicurio Registry (``parley registry up``, started here when
it does not answer, and left running like the local broker; ``scripts/test.sh`` stops what a
run started). With ``CI=true`` a registry that cannot be had fails the run instead of skipping.

Test modules import the fixture: ``from tests.schema_registry import schema_registry_url``.
"""

from __future__ import annotations

import os
import uuid
from types import SimpleNamespace

import pytest

from parley import registry_local
from parley.settings import BrokerSettings


def _start() -> str:
    if os.environ.get("SCHEMA_REGISTRY_URL"):
        return os.environ["SCHEMA_REGISTRY_URL"]
    s = registry_local.RegistryServer(cache_dir=BrokerSettings().cache_dir)
    registry_local.up(s)
    return s.url


@pytest.fixture(scope="session")
def schema_registry_url() -> str:
    """The Confluent-compatible API of a real registry for this test session."""
    try:
        url = _start()
        if not registry_local.answers(url, 10.0):
            raise RuntimeError(f"{url} does not answer")
    except Exception as e:  # no JDK/Maven, no Maven Central, or the registry did not start
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and no Schema Registry could be had: {e}", pytrace=False)
        pytest.skip(f"no Schema Registry: {e}")
    return url


def registry_config(url: str, prefix: str | None = None) -> SimpleNamespace:
    """What ``codec_for`` reads of the Kafka settings, for a test's own subjects."""
    return SimpleNamespace(schema_registry_url=url, schema_registry_auth=None,
                           topic_prefix=prefix if prefix is not None else f"r{uuid.uuid4().hex[:10]}.")


