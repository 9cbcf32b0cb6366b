"""The emulators' delivery receipts reach the real ingress signed as each provider signs them,
and become DeliveryStatusChanged naming the provider ids the egress recorded."""

from __future__ import annotations

from adapters.accounts import Accounts
from adapters.app import build_app
from adapters.base import Account
from adapters.channels import Registry
from adapters.metrics import IngressMetrics
from egress.model import Plan, SendAccount
from egress.plan import keys
from egress.providers import PROVIDERS
from egress.sender import Sender
from parley.app.emulator.providers import Emulator
from parley.app.emulator.receipts import Receipts
from schemas import topics
from tests.unit.test_ingress_app import NOW_MS, FakeProducer, make_settings, topic
from tests.waiting import async_wait_until

INGRESS_ACCOUNTS = Accounts([
    Account("acme", "whatsapp", "106540352242922", secrets=("meta-secret",)),
    Account("acme", "twilio", "+33644600000", secrets=("twilio-token",)),
    Account("acme", "viber", "acmesupport", secrets=("viber-token",)),
    Account("acme", "rbm", "acme-support", secrets=("rbm-client-token",)),
])
SENDS = [  # (egress account, recipient)
    (SendAccount("acme", "whatsapp", "106540352242922", {"access_token": "t"}), "33612345678"),
    (SendAccount("acme", "twilio", "+33644600000", {"account_sid": "ACx", "auth_token": "twilio-token"}),
     "+33612345678"),
    (SendAccount("acme", "viber", "acmesupport", {"auth_token": "viber-token"}), "viber-user=="),
    (SendAccount("acme", "rbm", "acme-support", {"access_token": "t", "agent_id": "acme-support"}), "+33612345678"),
]


def plan_for(account: SendAccount, recipient: str) -> Plan:
    return Plan(({"type": "text", "text": f"hello via {account.provider}"},),
                {"asked": ["text"], "sent": ["text"], "reasons": [], "parts": 1, "mode": "none"}, "none", recipient,
                keys(account.provider, f"ev-{account.provider}", 1))


async def test_receipts_reach_the_ingress_and_name_the_provider_ids(client_for) -> None:
    producer = FakeProducer()
    ingress = await client_for(build_app(make_settings(), accounts=INGRESS_ACCOUNTS, registry=Registry(),
                                         producer=producer, metrics=IngressMetrics(), clock_ms=lambda: NOW_MS))
    receipts = Receipts(str(ingress.make_url("")), INGRESS_ACCOUNTS, read_ratio=1.0, delay_s=0.01)
    emulator = await client_for(Emulator(receipts=receipts).app())
    sender = Sender(emulator_url=str(emulator.make_url("")).rstrip("/"))
    await sender.start()
    sent = {}
    try:
        for account, recipient in SENDS:
            event = {"envelope": {"event_id": f"ev-{account.provider}"}, "message_id": "m"}
            [call] = PROVIDERS[account.provider].requests(account, plan_for(account, recipient), event)
            result = await sender.call(account, call)
            assert result.ok, result
            sent[account.provider] = result.ids[0]
        arrived = await async_wait_until(lambda: len(producer.decoded(topic(topics.MESSAGES))) >= 9, 5, every=0.05)
        assert arrived, producer.decoded(topic(topics.MESSAGES))
        statuses = producer.decoded(topic(topics.MESSAGES))
    finally:
        await sender.close()
        await receipts.close()
    assert receipts.posted == {200: 9}, receipts.posted
    got = {(e["channel"], e["channel_message_id"], e["status"]) for e in statuses}
    assert got == {("whatsapp", sent["whatsapp"], s) for s in ("sent", "delivered", "read")} \
        | {("sms", sent["twilio"], s) for s in ("sent", "delivered")} \
        | {("viber", sent["viber"], s) for s in ("delivered", "read")} \
        | {("rbm", sent["rbm"], s) for s in ("delivered", "read")}
