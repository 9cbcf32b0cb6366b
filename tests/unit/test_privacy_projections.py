"""Sealed events into the projections, then an erasure, then a replay (in memory and SQLite).

The sealed topology of ``test_privacy_pipeline`` writes its topics; a customer with distinctive
strings writes on WhatsApp and SMS (one number: one customer) and gets CRM context. The projections open the events: the
strings are readable through the product (profile, thread). After the erasure (keys destroyed,
``PrivacyPass``) they are in no row and in no byte of the SQLite files, the customer is marked
erased, and the KPI tables are unchanged. A rebuild from the same log (the keys gone) yields
the same tables as the live erasure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import projections
from adapters.sealing import Sealer
from parley.app.synthetic import events as f
from parley.privacy.keyring import Keyring
from parley.privacy.seal import Opener
from parley.settings import WorkerSettings
from projections import query
from projections.engine import Batcher, Decoded
from projections.privacy import PrivacyPass
from projections.store import Store, open_store
from schemas import topics
from schemas.events import derive_id, envelope, make
from streams import topology
from streams.runtime.local import LocalRunner
from tests.projection_support import dump
from tests.unit.test_privacy_pipeline import RULES, _opaque, privacy_settings
from tests.unit.test_topology import phase_one

SECRETS = ("Zoltan Kovacs", "+36301234567", "36301234567", "4455667", "broken teapot", "Andrassy ut 12")
READ = (topics.IDENTITY, topics.CUSTOMER_CONTEXT, topics.CONVERSATIONS, topics.MESSAGES,
        topics.KPI_CONTACTS, topics.KPI_INTERVALS)
KPI_TABLES = ("kpi_contacts", "kpi_intervals", "kpi_agent_intervals")


def _zoltan(sealer: Sealer) -> list[tuple[topics.Topic, dict[str, Any]]]:
    wa = f.identity("whatsapp", "36301234567", phone="+36301234567", name="Zoltan Kovacs")
    sms = f.identity("sms", "+36301234567", phone="+36301234567")  # the same number: the same customer
    at = f.T0 + 30 * f.MIN
    out = [(topics.MESSAGES, f.received("acme", wa, "My order 4455667: a broken teapot", at, n="zk1")),
           (topics.MESSAGES, f.received("acme", sms, "Still the broken teapot, order 4455667", at + 60_000, n="zk2"))]
    sealed = [(t, sealer.message(_opaque(e))) for t, e in out]
    customer = sealed[0][1]["privacy"]["subject_id"]
    env = envelope("CustomerContextUpdated", event_id=derive_id("ctx-zk"), occurred_at=at + 120_000, tenant_id="acme",
                   partition_key=f"acme|{customer}", producer="test")
    ctx = make("CustomerContextUpdated", env, customer_id=customer, source="crm", name="Zoltan Kovacs", tier="vip",
               attributes={"address": "Andrassy ut 12"})
    return [*sealed, (topics.CUSTOMER_CONTEXT, sealer.context(ctx))]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("privacy")
    settings = WorkerSettings(routing_file=RULES, auto_resolve_after_s=2 * 3600, privacy=privacy_settings(tmp))
    sealer = Sealer(Keyring(settings.privacy))
    runner = LocalRunner(topology.build(settings), seed=1, lateness_ms=2000)
    extra = _zoltan(sealer)
    batch = sorted([(t, sealer.message(_opaque(e)) if t is topics.MESSAGES else e) for t, e in phase_one(0)] + extra,
                   key=lambda x: x[1]["envelope"]["occurred_at"])
    context = [e for t, e in batch if t is topics.CUSTOMER_CONTEXT]
    for t, e in batch:
        if t is not topics.CUSTOMER_CONTEXT:
            runner.produce(t, e)
    runner.run()
    log = [(t, e) for t in READ for e in ([v for _, v in runner.read(t)] if t is not topics.CUSTOMER_CONTEXT
                                          else context)]
    return {"tmp": tmp, "settings": settings, "log": log, "customer": extra[0][1]["privacy"]["subject_id"]}


def project(url: str, log: list[tuple[topics.Topic, dict[str, Any]]], opener: Opener) -> Store:
    store = open_store(url)
    store.migrate()
    decoded = [Decoded(t.name, 0, i, opener.open(e)) for i, (t, e) in enumerate(log)]
    for p in projections.PROJECTIONS.values():
        b = Batcher(store, p, fresh=True)
        b.apply(decoded)
        b.commit()
    return store


def _bytes(tmp: Path, name: str) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(tmp.glob(f"{name}*")))


def test_erased_from_the_rows_and_the_files_kpis_kept_and_a_rebuild_agrees(world) -> None:
    tmp, s, customer = world["tmp"], world["settings"], world["customer"]
    ring = Keyring(s.privacy)
    live = project(f"sqlite:///{tmp / 'live.db'}", world["log"], Opener(ring))
    profile = query.customer_profile(live, "acme", customer)
    assert profile["name"] == "Zoltan Kovacs" and profile["attributes"] == {"address": "Andrassy ut 12"}
    thread = query.thread_detail(live, "acme", profile["threads"][0]["thread_id"])
    shown = repr(profile) + repr(thread)
    assert all(x in shown for x in ("4455667", "broken teapot", "+36301234567", "Zoltan Kovacs"))
    live_file = _bytes(tmp, "live.db")
    assert all(x.encode() in live_file for x in ("Zoltan Kovacs", "broken teapot", "Andrassy ut 12"))
    kpis_before = dump(live, ["kpis"])

    ring.store.erase("acme", [customer], f.T0 + 10 * f.HOUR)
    changed = PrivacyPass(live, ring.store, ring).apply()
    assert changed["messages"] >= 2 and changed["customers"] == 1
    erased = query.customer_profile(live, "acme", customer)
    assert erased["erased_at"] and erased["name"] is None and erased["attributes"] == {}
    assert erased["message_count"] == profile["message_count"]  # counts stay
    assert dump(live, ["kpis"]) == kpis_before
    found = [x for x in SECRETS if x.encode() in _bytes(tmp, "live.db")]
    assert not found, found

    rebuilt = project(f"sqlite:///{tmp / 'rebuilt.db'}", world["log"], Opener(Keyring(s.privacy)))
    PrivacyPass(rebuilt, ring.store).apply(since=0)
    assert dump(rebuilt) == dump(live)  # the same tables: the subject shown as erased, the KPIs unchanged
    assert not [x for x in SECRETS if x.encode() in _bytes(tmp, "rebuilt.db")]


def test_retention_shreds_old_content_by_event_time_and_keeps_identities(tmp_path: Path) -> None:
    """Messages of two days 40 days apart; retention 30 days, 'now' in event time is the newest
    projected event: the old day's text is gone from the rows and unreadable, the new day's and
    the customer's name stay."""
    from parley.settings import ProjectionSettings
    from projections import privacy_ops

    s = privacy_settings(tmp_path).model_copy(update={"retention_days": 30})
    ring = Keyring(s)
    sealer = Sealer(ring)
    wa = f.identity("whatsapp", "36309876543", phone="+36309876543", name="Ilona Retention")
    old, new = f.T0, f.T0 + 40 * 24 * f.HOUR
    log = []
    for n, (at, text) in enumerate([(old, "old text 7766554"), (new, "new text 1122334")]):
        e = sealer.message(_opaque(f.received("acme", wa, text, at, n=f"r{n}")))
        e = {**e, "customer_id": e["privacy"]["subject_id"], "thread_id": "th-r"}
        log.append((topics.CONVERSATIONS, e))
    env = envelope("ContactMeasured", event_id="cm-r", occurred_at=new, tenant_id="acme", partition_key="acme|th-r",
                   producer="test")
    log.append((topics.KPI_CONTACTS, make("ContactMeasured", env, contact_id="th-r", thread_id="th-r",
                                          customer_id=log[0][1]["customer_id"], channel="whatsapp",
                                          queue="general", interval_start=new, started_at=new, status="open")))
    url = f"sqlite:///{tmp_path / 'p.db'}"
    store = project(url, log, Opener(ring))
    settings = ProjectionSettings(database_url=url, privacy=s)
    done = privacy_ops.run_retention(settings, store=store)
    assert [(e["tenant"], e["keys_destroyed"]) for e in done["expired"]] == [("acme", 1)]
    texts = {r["occurred_at"]: r["text"] for r in store.query("SELECT occurred_at, text, party_name FROM messages")}
    assert texts == {old: None, new: "new text 1122334"}
    assert {r["party_name"] for r in store.query("SELECT party_name FROM messages")} == {"Ilona Retention"}
    assert Opener(Keyring(s)).open(log[0][1])["text"] is None and b"7766554" not in _bytes(tmp_path, "p.db")
    assert privacy_ops.run_retention(settings, store=store)["expired"][0]["keys_destroyed"] == 0  # once
