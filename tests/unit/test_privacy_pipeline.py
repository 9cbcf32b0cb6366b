"""The stream topology on sealed input decides as on plaintext, and writes no plaintext.

The scenario of ``test_topology`` (a morning of traffic on six channels, an e-mail and a web
chat sharing an address, then agents replying and resolving) is run in memory as written and
sealed the way the ingress and the agent API seal it. Customer and thread ids differ (sealed,
a customer is named by the token of its identity), and so may what depends on their order
(ties in routing's waiting line); what is decided from the messages is the same: which
messages are one customer, which are one thread, their enrichment, the merges. No phone
number, e-mail address or text of the input appears in any record the sealed topology wrote
(outputs, internal topics, changelogs). An erasure then drops the stores' entries.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from adapters.sealing import Sealer
from parley.app.synthetic import events as f
from parley.privacy import crypto
from parley.privacy.keyring import Keyring
from parley.settings import PrivacySettings, WorkerSettings
from schemas import topics
from schemas.events import derive_id, envelope, make
from streams import topology
from streams.runtime.local import LocalRunner
from tests.unit.test_topology import RULES, phase_one, phase_two


def privacy_settings(tmp: Path) -> PrivacySettings:
    return PrivacySettings(enabled=True, master_key=SecretStr(crypto.new_master_key()),
                           keys_url=f"sqlite:///{tmp / 'keys.db'}", refresh_s=0.0)


def sealed_run(tmp: Path, phases: int = 2) -> tuple[LocalRunner, Sealer]:
    settings = WorkerSettings(routing_file=RULES, auto_resolve_after_s=2 * 3600, privacy=privacy_settings(tmp))
    sealer = Sealer(Keyring(settings.privacy))
    runner = LocalRunner(topology.build(settings), seed=1, lateness_ms=2000)
    for batch in (phase_one(seed=0), None)[:phases]:
        batch = batch if batch is not None else phase_two(runner)
        for topic, event in batch:
            if topic is topics.MESSAGES:
                event = sealer.message(_opaque(event))
            runner.produce(topic, event)
        runner.run()
    return runner, sealer


def _opaque(event: dict[str, Any]) -> dict[str, Any]:
    """The factories name a message after its sender (``whatsapp-33610...-7``); providers' ids
    are opaque (kept readable: receipts and replies match on them; docs/PRIVACY.md)."""
    if event.get("channel_message_id"):
        return {**event, "channel_message_id": derive_id(event["channel_message_id"])}
    return event


def plain_run(phases: int = 2) -> LocalRunner:
    runner = LocalRunner(topology.build(WorkerSettings(routing_file=RULES, auto_resolve_after_s=2 * 3600)),
                         seed=1, lateness_ms=2000)
    for batch in (phase_one(seed=0), None)[:phases]:
        for topic, event in (batch if batch is not None else phase_two(runner)):
            runner.produce(topic, event)
        runner.run()
    return runner


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalRunner, LocalRunner, Sealer]:
    sealed, sealer = sealed_run(tmp_path_factory.mktemp("keys"))
    return plain_run(), sealed, sealer


@pytest.fixture(scope="module")
def mornings(tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalRunner, LocalRunner]:
    return plain_run(1), sealed_run(tmp_path_factory.mktemp("keys1"), 1)[0]


def _kpi_figures(runner: LocalRunner) -> dict[str, str]:
    last: dict[str, str] = {}
    for key, v in runner.read(topics.KPI_INTERVALS):
        last[key.decode()] = json.dumps({k: x for k, x in v.items() if k != "envelope"}, sort_keys=True)
    return last


def _kinds(runner: LocalRunner, t: topics.Topic) -> Counter:
    return Counter(v["envelope"]["event_type"] for _, v in runner.read(t))


def _groups(runner: LocalRunner, by: str) -> set[frozenset[str]]:
    """Customer messages grouped by ``by`` (customer_id, thread_id), as sets of event ids."""
    out: dict[str, set[str]] = {}
    for _, v in runner.read(topics.CONVERSATIONS):
        if v["envelope"]["event_type"] == "MessageReceived":
            out.setdefault(v[by], set()).add(v["envelope"]["event_id"])
    return {frozenset(g) for g in out.values()}


def _enrichments(runner: LocalRunner) -> dict[str, Any]:
    return {v["message_event_id"]: (v["language"], v["sentiment_label"], [i["name"] for i in v["intents"]])
            for _, v in runner.read(topics.CONVERSATIONS) if v["envelope"]["event_type"] == "MessageEnriched"}


def test_sealed_input_gives_the_same_decisions(mornings) -> None:
    plain, sealed = mornings
    assert sealed.read(topics.DEAD_LETTER) == []
    assert _groups(sealed, "customer_id") == _groups(plain, "customer_id")
    assert _groups(sealed, "thread_id") == _groups(plain, "thread_id")  # subjects and references, as tokens
    assert _enrichments(sealed) == _enrichments(plain)  # the text was opened to enrich it
    assert _kinds(sealed, topics.IDENTITY) == _kinds(plain, topics.IDENTITY)  # links and the merge
    merged = [v for _, v in sealed.read(topics.IDENTITY) if v["envelope"]["event_type"] == "IdentitiesMerged"]
    assert merged and all(k.split(":")[-1].startswith("~") for m in merged for k in m["identity_keys"])
    channel_threads = {k: v for k, v in _kpi_figures(plain).items() if "|channel|" in k}
    assert channel_threads and channel_threads == {k: v for k, v in _kpi_figures(sealed).items() if "|channel|" in k}


def test_no_plaintext_in_anything_the_sealed_topology_wrote(runs) -> None:
    plain, sealed, _ = runs
    # long enough never to occur by chance in ciphertext (base64) or tokens (hex)
    needles = [b"+33610", b"3361000", b"@example.com", b"commande", b"the item is broken", b"Order 1",
               b"zoe@example.com", b"user-1"]
    everything = [v or b"" for log in sealed.logs.values() for part in log.records for _, v, _ in part]
    everything += [k or b"" for log in sealed.logs.values() for part in log.records for k, _, _ in part]
    everything += [b"%s%s" % (k, v or b"") for changes in sealed.changelog.values() for k, v in changes.items()]
    blob = b"\n".join(everything)
    assert blob and all(n not in blob for n in needles), [n for n in needles if n in blob]
    plain_blob = b"\n".join(v or b"" for log in plain.logs.values() for part in log.records for _, v, _ in part)
    assert all(n in plain_blob for n in needles[:3])  # the needles are the scenario's: the search can fail


def test_an_erasure_drops_the_subjects_entries(runs) -> None:
    _, sealed, sealer = runs
    zoe = next(v for _, v in sealed.read(topics.CONVERSATIONS)
               if v["envelope"]["event_type"] == "MessageReceived" and v["channel"] == "email"
               and v["channel_account_id"] == "acct-1" and v["envelope"]["correlation_id"] == derive_id(
                   "acme", "email", "email-zoe@example.com-z1"))
    tenant, customer = "acme", zoe["customer_id"]
    keys = sealer.keyring.store.identities(tenant, [customer])[customer]
    channel_key = next(k for k in keys if k.startswith("channel:email:"))
    stores = {name: task.stores for name, task in sealed.tasks.items()}
    ident_key = f"{tenant}|email|{channel_key.rsplit(':', 1)[1]}"
    assert any(ident_key in s["identities"] for n, s in stores.items() if n.startswith("identity/"))
    assert any(f"{tenant}|{customer}" in s["threads"] for n, s in stores.items() if n.startswith("conversations/"))
    at = f.T0 + 10 * f.HOUR
    for topic, key in ((topics.MESSAGES, f"{tenant}|email|{channel_key.rsplit(':', 1)[1]}"),
                       (topics.IDENTITY_COMMANDS, tenant), (topics.CONVERSATION_MESSAGES, f"{tenant}|{customer}")):
        sealed.produce(topic, _erased(tenant, customer, keys, key, at))
    sealed.run()
    assert not any(ident_key in s["identities"] for n, s in stores.items() if n.startswith("identity/"))
    assert not any(f"{tenant}|{customer}" in s["threads"] for n, s in stores.items() if n.startswith("conversations/"))
    assert not any(f"{tenant}|{k}" in s["owners"] for k in keys for n, s in stores.items()
                   if n.startswith("identity-graph/"))
    assert sealed.read(topics.DEAD_LETTER) == []


def _erased(tenant: str, customer: str, keys: list[str], key: str, at: int) -> dict[str, Any]:
    env = envelope("SubjectErased", event_id=derive_id("erase-test", key), occurred_at=at, tenant_id=tenant,
                   partition_key=key, producer="test")
    return make("SubjectErased", env, erasure_id="e-1", customer_id=customer, customer_ids=[customer],
                identity_keys=keys)
