"""Kafka away: 503 with Retry-After, never a 2xx; once it is back, the retry is stored exactly once.

Uses a second, private broker (``parley.kafka_local`` on free ports, storage in a temporary
directory, the jars of the shared cache) that this test starts and stops. The shared broker on
9092 is never touched.
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from parley import kafka_local, topics_admin
from parley.settings import BrokerSettings, KafkaSettings
from schemas import topics
from tests.integration.test_ingress_kafka import WEB_AUTH, Running, read, web_message

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def private_broker(tmp_path_factory: pytest.TempPathFactory):
    """Settings of a broker of our own (not started yet); stopped at the end whatever happens."""
    shared = BrokerSettings()
    jars = shared.cache_dir / f"kafka-{shared.kafka_version}"
    try:
        kafka_local.ensure_jars(shared)  # fetched with Maven unless cached (the shared broker may be elsewhere)
    except Exception as e:  # no Maven, no Maven Central
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the Kafka jars could not be had: {e}", pytrace=False)
        pytest.skip(f"the Kafka jars are not cached and could not be fetched: {e}")
    cache: Path = tmp_path_factory.mktemp("private-broker")
    (cache / jars.name).symlink_to(jars, target_is_directory=True)
    settings = BrokerSettings(cache_dir=cache, port=_free_port(), controller_port=_free_port(), heap="512m")
    yield settings
    kafka_local.down(settings)


async def _up(settings: BrokerSettings, kafka: KafkaSettings) -> None:
    await asyncio.to_thread(kafka_local.up, settings)
    await topics_admin.apply(kafka)


async def _retried(ing: Running, body: bytes | dict, timeout_s: float = 30.0) -> tuple[int, str]:
    """Post as a provider retries: again while the answer is 503 "retry later" (refused, not
    lost), until another answer or ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        status, text, _ = await ing.post("/webhooks/webchat/acme-web", body, WEB_AUTH)
        if status != 503 or "retry later" not in text or asyncio.get_running_loop().time() > deadline:
            return status, text
        await asyncio.sleep(1.0)


async def _not_ready_within(ing: Running, timeout_s: float) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        async with ing.http.get("/readyz") as resp:
            if resp.status == 503:
                return True
        await asyncio.sleep(0.2)
    return False


async def test_kafka_down_is_503_and_the_retry_is_stored_exactly_once(private_broker: BrokerSettings) -> None:
    kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{private_broker.port}", topic_prefix="outage.",
                          default_partitions=3)
    first, second = web_message("m-before-start", visitor="v-1"), web_message("m-mid-outage", visitor="v-2")
    async with Running(kafka, produce_timeout_s=3.0) as ing:
        # 1. the broker has never been up: not ready, and every webhook is refused with 503
        async with ing.http.get("/readyz") as resp:
            assert resp.status == 503
        status, text, headers = await ing.post("/webhooks/webchat/acme-web", first, WEB_AUTH)
        assert status == 503 and headers["Retry-After"] == "5" and "not stored" in text
        # 2. it comes up: the producer connects by itself, the provider's retry is stored
        await _up(private_broker, kafka)
        await ing.ready(timeout_s=60)
        status, text = await _retried(ing, first)
        assert status == 200, text
        # 3. it goes down while we run: the produce times out, 503; nothing is answered 2xx
        await asyncio.to_thread(kafka_local.down, private_broker, 3.0)  # SIGKILL after 3 s: a crash
        status, text, headers = await ing.post("/webhooks/webchat/acme-web", second, WEB_AUTH)
        assert status == 503 and headers["Retry-After"] == "5", text
        status, _, _ = await ing.post("/webhooks/webchat/acme-web", second, WEB_AUTH)
        assert status == 503  # still down: refused at once, not queued
        assert await _not_ready_within(ing, 15.0)  # readiness says the producer cannot produce
        # 4. back again: ready only once the producer connects and the dedup's claim-log reader
        # has read the log to its end again; then the retry is stored at the first attempt, and
        # the refused attempts are not delivered late
        await _up(private_broker, kafka)
        await ing.ready(timeout_s=60)
        status, text, _ = await ing.post("/webhooks/webchat/acme-web", second, WEB_AUTH)
        assert status == 200, text
    got = await read(kafka, topics.MESSAGES, 2, settle_s=3.0)
    ids = sorted(e["channel_message_id"] for _, e in got)
    assert ids == ["m-before-start", "m-mid-outage"]
