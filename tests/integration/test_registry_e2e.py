"""Registry mode end to end: the ingress, the stream worker and the projections, each in its own
process as ``parley ingress|worker|projections run`` with ``PARLEY_KAFKA__SCHEMA_REGISTRY_URL``
set, against the real broker, a real Schema Registry (Apicurio, ``tests/schema_registry.py``) and
SQLite. Webchat messages posted to the ingress must reach the projection tables, and every record
on the topics must carry a registry id (not a local fingerprint) that a new process resolves.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from parley.settings import KafkaSettings
from projections.store import open_store
from schemas import topics
from schemas.catalog import catalog
from schemas.codec import new_codec
from schemas.events import derive_id
from schemas.registry import RegistryClient, RegistryError
from tests.schema_registry import schema_registry_url  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
WEB_AUTH = "Bearer demo-webchat-token"  # config/accounts.example.toml, account acme-web
MESSAGES = [("v-1", "m-1", "Bonjour, où est ma commande 4512 ?"), ("v-1", "m-2", "Elle devait arriver hier"),
            ("v-2", "m-3", "I want a refund for my invoice please"), ("v-3", "m-4", "Hi! Can I change my address?")]
WRITTEN = (topics.RAW_INGRESS, topics.INGRESS_CLAIMS, topics.MESSAGES, topics.CONVERSATION_MESSAGES,
           topics.CONVERSATIONS, topics.KPI_CONTACTS, topics.KPI_INTERVALS)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(k: KafkaSettings, **extra: str) -> dict[str, str]:
    keep = {n: v for n, v in os.environ.items() if not n.startswith("PARLEY_") and n != "KAFKA_BOOTSTRAP_SERVERS"}
    return {**keep, "PARLEY_KAFKA__BOOTSTRAP_SERVERS": k.bootstrap_servers,
            "PARLEY_KAFKA__TOPIC_PREFIX": k.topic_prefix,
            "PARLEY_KAFKA__SCHEMA_REGISTRY_URL": k.schema_registry_url or "",
            "PARLEY_LOG__FORMAT": "json", **extra}


@contextlib.contextmanager
def parley(args: list[str], env: dict[str, str], log: Path) -> Iterator[Callable[[], None]]:
    """``parley <args>`` in its own process; yields a check that it is still running."""
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "parley.app.cli", *args], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)

    def alive() -> None:
        if proc.poll() is not None:
            raise AssertionError(f"parley {' '.join(args)} exited {proc.returncode}:\n{log.read_text()[-3000:]}")

    try:
        yield alive
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until(cond: Callable[[], bool], timeout_s: float, *alive: Callable[[], None]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for check in alive:
            check()
        if cond():
            return
        time.sleep(0.3)
    raise AssertionError(f"not within {timeout_s}s")


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def post(url: str, visitor: str, mid: str, text: str) -> list[str]:
    body = json.dumps({"type": "message", "message_id": mid, "visitor_id": visitor, "text": text}).encode()
    req = urllib.request.Request(f"{url}/webhooks/webchat/acme-web", data=body, method="POST",
                                 headers={"Authorization": WEB_AUTH, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
        return list(json.loads(resp.read())["accepted"])


def raw_values(k: KafkaSettings, t: topics.Topic) -> list[bytes]:
    """Every committed value of a catalogue topic, undecoded."""
    name = topics.named(k.topic_prefix, t)
    c = Consumer(k.librdkafka_config(**{"group.id": f"e2e-{uuid.uuid4().hex[:6]}", "enable.auto.commit": False,
                                        "isolation.level": "read_committed", "enable.partition.eof": True}))
    try:
        parts = sorted(c.list_topics(name, timeout=10).topics[name].partitions)
        todo = {p for p in parts if c.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1] > 0}
        c.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in todo])
        out: list[bytes] = []
        while todo:
            for m in c.consume(1000, 1.0):
                if m.error() is not None:
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        todo.discard(m.partition())
                    continue
                if m.value() is not None:
                    out.append(m.value())
        return out
    finally:
        c.close()


def registry_ids(url: str, prefix: str) -> set[int]:
    """The ids of every version registered under this run's subjects (``<prefix><topic>-<type>``)."""
    client, cat, out = RegistryClient(url), catalog(), set()
    for t in topics.ALL + topics.INTERNAL:
        for name in (n for n in t.value_types if n in cat.by_short):
            subject = f"{prefix}{t.name}-{cat.by_short[name].fullname}"
            try:
                out |= {client.version_id(subject, v) for v in client.versions(subject)}
            except RegistryError as e:
                if e.status != 404:  # a subject no process of this run registered
                    raise
    return out


def test_ingress_worker_and_projections_agree_on_registry_ids(applied_topics, schema_registry_url,  # noqa: F811
                                                              tmp_path) -> None:
    k = applied_topics.model_copy(update={"schema_registry_url": schema_registry_url})
    port, db = _free_port(), f"sqlite:///{tmp_path}/e2e.db"
    ingress_url = f"http://127.0.0.1:{port}"
    ingress = parley(["ingress"], _env(k, PARLEY_PORT=str(port), PARLEY_HOST="127.0.0.1",
                                       PARLEY_ACCOUNTS_FILE="config/accounts.example.toml"), tmp_path / "ingress.log")
    worker = parley(["worker"], _env(k, PARLEY_APP_ID=f"w{uuid.uuid4().hex[:8]}", PARLEY_APPLY_TOPICS="false",
                                     PARLEY_ROUTING_FILE="config/routing.example.toml", PARLEY_LATENESS_MS="200",
                                     PARLEY_IDLE_MS="300", PARLEY_AUTO_RESOLVE_AFTER_S="0"), tmp_path / "worker.log")
    runner = parley(["projections", "run"], _env(k, PARLEY_DATABASE_URL=db, PARLEY_POLL_TIMEOUT_MS="100"),
                    tmp_path / "projections.log")
    with ingress as ingress_alive, worker as worker_alive, runner as runner_alive:
        alive = (ingress_alive, worker_alive, runner_alive)
        wait_until(lambda: _ready(ingress_url), 60, *alive)
        accepted = [eid for visitor, mid, text in MESSAGES for eid in post(ingress_url, visitor, mid, text)]
        assert accepted == [derive_id("acme", "webchat", "acme-web", v, m) for v, m, _ in MESSAGES]
        store = open_store(db)

        def projected() -> bool:
            try:
                rows = store.query("SELECT message_event_id FROM message_enrichments")
            except Exception:  # noqa: BLE001 - the runner has not created the tables yet
                return False
            return {r["message_event_id"] for r in rows} >= set(accepted)

        wait_until(projected, 120, *alive)
        # the customers' messages: outside the example rules' office hours (wall clock: the
        # ingress stamps web chat messages with the time of the request) routing also answers
        # each new contact with an automated reply, a message of its own
        messages = store.query("SELECT event_id, thread_id FROM messages WHERE direction = 'in'")
        threads = store.query("SELECT thread_id, customer_id FROM threads")
        store.close()
    assert {m["event_id"] for m in messages} == set(accepted)
    assert len({t["customer_id"] for t in threads}) == 3  # three visitors, three customers
    assert all(m["thread_id"] in {t["thread_id"] for t in threads} for m in messages)

    known = registry_ids(schema_registry_url, k.topic_prefix)
    fingerprints = {sv.local_id for sv in catalog().all_versions()}
    reader = new_codec(k)  # a process that wrote nothing: knows the ids from start-up alone
    reader.prepare(())
    for t in WRITTEN:
        values = raw_values(k, t)
        assert values or t in (topics.KPI_CONTACTS, topics.KPI_INTERVALS), f"nothing on {t.name}"
        ids = {int.from_bytes(v[1:5], "big") for v in values}
        assert ids <= known and not ids & fingerprints, (t.name, ids, known)
        assert all(reader.decode(v)["envelope"]["event_id"] for v in values)
    assert raw_values(k, topics.DEAD_LETTER) == []
    assert reader.ids.lazy == 0
