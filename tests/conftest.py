"""Shared fixtures. The broker comes from, in order: ``KAFKA_BOOTSTRAP_SERVERS``; testcontainers'
Kafka where a Docker engine answers; the Maven-jar launcher (``parley kafka up``).
With ``CI=true`` a missing broker fails the run instead of skipping.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

from parley.settings import BrokerSettings, KafkaSettings


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


def _start_broker(request: pytest.FixtureRequest) -> str:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        # Confluent Platform 7.9 ships Apache Kafka 3.9, the version `parley kafka up` runs.
        container = KafkaContainer("confluentinc/cp-kafka:7.9.1").with_kraft()
        container.start()
        request.addfinalizer(container.stop)
        return container.get_bootstrap_server()
    from parley import kafka_local

    s = BrokerSettings()
    kafka_local.up(s)
    return f"{s.host}:{s.port}"


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> str:
    """Bootstrap servers of a real Kafka broker for this test session."""
    try:
        bootstrap = _start_broker(request)
    except Exception as e:  # no Docker, no JDK/Maven, or the broker did not start
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and no Kafka broker could be had: {e}", pytrace=False)
        pytest.skip(f"no Kafka broker: {e}")
    from parley.kafka_local import answers

    if not answers(bootstrap, 10.0):
        msg = f"Kafka at {bootstrap} does not answer"
        if os.environ.get("CI") == "true":
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return bootstrap


@pytest.fixture
def topic_prefix() -> str:
    """A unique prefix so each test has its own topics on the shared broker."""
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
def kafka_settings(kafka_bootstrap: str, topic_prefix: str):
    """Settings for this test's own topic namespace; its topics are deleted afterwards, so a
    long-lived broker does not pile up thousands of partitions (and slow restarts) over runs."""
    from parley import topics_admin

    k = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix,
                      default_partitions=3)
    yield k
    try:
        asyncio.run(topics_admin.delete_prefixed(k))
    except Exception as e:  # cleanup only: never hides the test's own result
        import warnings

        warnings.warn(f"could not delete topics {topic_prefix}*: {e}", stacklevel=1)


@pytest.fixture
def applied_topics(kafka_settings: KafkaSettings) -> KafkaSettings:
    """The whole catalogue created under this test's prefix; yields the settings."""
    from parley import topics_admin

    asyncio.run(topics_admin.apply(kafka_settings))
    return kafka_settings


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL server (Debian's binaries); skips if it cannot start, fails under CI."""
    import shutil
    import tempfile
    from pathlib import Path

    from tests import postgres

    tmp = Path(tempfile.mkdtemp(prefix="parley-pg-"))  # not under pytest's 0700 tree: postgres must enter it
    try:
        url, stop = postgres.start(tmp)
    except Exception as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and PostgreSQL could not be started: {e}", pytrace=False)
        pytest.skip(f"no PostgreSQL: {e}")
    yield url
    stop()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """The URL of a fresh, empty database on the test PostgreSQL server."""
    from tests import postgres

    return postgres.create_database(postgres_server, f"t{uuid.uuid4().hex[:12]}")
