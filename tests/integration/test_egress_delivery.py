"""The egress on the real broker, against the provider emulators: every channel delivered once,
refusals visible as permanent failures, retries on 5xx/429, a duplicate input not sent twice,
a restart that skips what was sent."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from confluent_kafka import Consumer, Producer, TopicPartition

from egress import accounts as send_accounts
from egress.runner import Egress
from egress.sender import Sender
from egress.webchat import Hub
from parley.app.emulator.providers import Emulator
from parley.app.emulator.smtp import SmtpServer
from parley.settings import EgressSettings, KafkaSettings
from schemas import topics
from schemas.codec import Codec
from schemas.events import derive_id, envelope, make

pytestmark = pytest.mark.integration
T0 = 1_764_000_000_000  # event time of the test conversation

ACCOUNTS = {"accounts": [
    {"tenant": "acme", "adapter": "whatsapp", "account_id": "106540352242922", "options": {
        "send": {"access_token": "wa-token", "rate_per_s": 500},
        "templates": [{"name": "order_update", "language": "en", "parameters": 2,
                       "body": "Order {{1}} ships on {{2}}."}]}},
    {"tenant": "acme", "adapter": "messenger", "account_id": "1029384756473829",
     "options": {"send": {"access_token": "page-token", "rate_per_s": 500}}},
    {"tenant": "acme", "adapter": "instagram", "account_id": "17841405822304914",
     "options": {"send": {"access_token": "IG-token", "rate_per_s": 500}}},
    {"tenant": "acme", "adapter": "twilio", "account_id": "+33644600000",
     "options": {"send": {"account_sid": "ACemu", "auth_token": "tw", "rate_per_s": 500}}},
    {"tenant": "acme", "adapter": "telegram", "account_id": "7012345678",
     "options": {"send": {"bot_token": "7012345678:AAemu", "rate_per_s": 500}}},
    {"tenant": "acme", "adapter": "telegram", "account_id": "7099999999",
     "options": {"send": {"bot_token": "7099999999:AAother", "rate_per_s": 500}}},
    {"tenant": "acme", "adapter": "line", "account_id": "U4af4980629abcdef0123456789abcdef",
     "options": {"send": {"channel_access_token": "line-token", "rate_per_s": 500}}},
    {"tenant": "acme", "adapter": "viber", "account_id": "acmesupport",
     "options": {"send": {"auth_token": "viber-token", "sender_name": "Acme", "rate_per_s": 500}}},
    {"tenant": "acme", "adapter": "wechat", "account_id": "gh_3f2a1b4c5d6e",
     "options": {"send": {"app_id": "wx5823bf96d3bd56c7", "app_secret": "wechat-secret", "rate_per_s": 500}}},
    {"tenant": "acme", "adapter": "rbm", "account_id": "acme-support",
     "options": {"send": {"access_token": "rbm-token", "agent_id": "acme-support", "rate_per_s": 500}}},
    {"tenant": "acme", "adapter": "email", "account_id": "support@acme.example",
     "options": {"send": {"from": "support@acme.example", "rate_per_s": 500}}},
    {"tenant": "acme", "adapter": "webchat", "account_id": "acme-web", "options": {}},
]}
# channel -> (account id, recipient id, the emulator's provider and account for it)
ROUTES = {
    "whatsapp": ("106540352242922", "33612345678", "whatsapp", "106540352242922"),
    "messenger": ("1029384756473829", "psid-1", "messenger", "page-token"),
    "instagram": ("17841405822304914", "igsid-1", "instagram", "IG-token"),
    "sms": ("+33644600000", "+33612345678", "twilio", "ACemu"),
    "telegram": ("7012345678", "123456", "telegram", "7012345678:AAemu"),
    "line": ("U4af4980629abcdef0123456789abcdef", "Ucustomer1", "line", "line-token"),
    "viber": ("acmesupport", "viber-user-1==", "viber", "viber-token"),
    "wechat": ("gh_3f2a1b4c5d6e", "oOpenId1", "wechat", "wx5823bf96d3bd56c7"),
    "rbm": ("acme-support", "+33612345678", "rbm", "acme-support"),
    "email": ("support@acme.example", "cust@example.com", "email", "support@acme.example"),
    "webchat": ("acme-web", "web-user-1", None, None),
}


def identity(channel: str, rid: str) -> dict[str, Any]:
    return {"channel": channel, "id": rid, "display_name": None, "phone_e164": rid if rid.startswith("+") else None,
            "email": rid if "@" in rid else None, "login_id": None}


def make_sent(channel: str, n: int, *, at: int = T0, customer: str = "c1", recorded: int | None = None,
              **overrides: Any) -> dict[str, Any]:
    account, rid = ROUTES[channel][:2]
    mid = f"out-{channel}-{n}"
    env = envelope("MessageSent", event_id=derive_id("acme", "MessageSent", mid), occurred_at=at, tenant_id="acme",
                   partition_key=f"acme|{customer}", producer="ingress/agent-api",
                   recorded_at=recorded or int(time.time() * 1000))
    fields = dict(channel=channel, channel_account_id=account, recipient=identity(channel, rid), message_id=mid,
                  author_type="agent", author_id="ines", text=f"reply {channel} {n}", customer_id=customer,
                  thread_id=f"th-{customer}")
    fields.update(overrides)
    return make("MessageSent", env, **fields)


def make_received(channel: str, n: int, *, at: int = T0 - 3_600_000, customer: str = "c1",
                  sender: dict[str, Any] | None = None) -> dict[str, Any]:
    account, rid = ROUTES[channel][:2]
    env = envelope("MessageReceived", event_id=derive_id("acme", "in", channel, n, customer), occurred_at=at,
                   tenant_id="acme", partition_key=f"acme|{customer}")
    return make("MessageReceived", env, channel=channel, channel_account_id=account,
                sender=sender or identity(channel, rid),
                channel_message_id=f"in-{channel}-{n}", text="hello", raw_event_id="raw", customer_id=customer,
                thread_id=f"th-{customer}")


def produce(k: KafkaSettings, events: list[dict[str, Any]]) -> None:
    codec, name = Codec(), topics.named(k.topic_prefix, topics.CONVERSATIONS)
    p = Producer(k.librdkafka_config(**{"acks": "all", "enable.idempotence": True, "partitioner": "murmur2_random"}))
    for e in events:
        p.produce(name, codec.encode(e, name), e["envelope"]["partition_key"].encode())
    assert p.flush(30) == 0


def outcomes(k: KafkaSettings) -> list[dict[str, Any]]:
    """Every delivery event written so far (read_committed, from the start)."""
    codec, name = Codec(), topics.named(k.topic_prefix, topics.OUTBOUND)
    c = Consumer(k.librdkafka_config(**{"group.id": "t-readback", "isolation.level": "read_committed",
                                        "enable.partition.eof": True}))
    md = c.list_topics(name, timeout=10).topics[name]
    ends = {p: c.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1] for p in md.partitions}
    c.assign([TopicPartition(name, p, 0) for p in md.partitions if ends[p] > 0])
    out, left = [], {p for p in md.partitions if ends[p] > 0}
    while left:
        for m in c.consume(500, timeout=1.0):
            if m.error():
                left.discard(m.partition())
                continue
            out.append(codec.decode(m.value()))
            if m.offset() >= ends[m.partition()] - 1:
                left.discard(m.partition())
    c.close()
    return out


def handled(k: KafkaSettings, s: EgressSettings) -> Any:
    """A condition: the egress group has committed its input up to the end offsets it has now,
    so every message written before is handled (sent, refused, or skipped as sent before)."""
    name = topics.named(k.topic_prefix, topics.CONVERSATIONS)
    c = Consumer(k.librdkafka_config(**{"group.id": f"{k.topic_prefix}{s.group_id}", "enable.auto.commit": False}))
    try:
        parts = [TopicPartition(name, p) for p in c.list_topics(name, timeout=10).topics[name].partitions]
        ends = {tp.partition: c.get_watermark_offsets(tp, timeout=10)[1] for tp in parts}
    finally:
        c.close()

    def check() -> bool:
        c = Consumer(k.librdkafka_config(**{"group.id": f"{k.topic_prefix}{s.group_id}",
                                            "enable.auto.commit": False}))
        try:
            committed = c.committed(parts, timeout=10)  # an empty partition has none: OFFSET_INVALID
            return all(tp.offset >= ends[tp.partition] for tp in committed if ends[tp.partition] > 0)
        finally:
            c.close()
    return check


def final(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """message event id -> its final delivery event (sent, or failed with final)."""
    out = {}
    for e in events:
        t = e["envelope"]["event_type"]
        if t == "OutboundSent" or (t == "OutboundFailed" and e["final"]):
            out.setdefault(e["message_event_id"], e)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Emulators:
    """The emulators in this process (HTTP + SMTP), each bound to a port the system picks at
    bind time (a port picked free earlier can be taken meanwhile by a client's outgoing
    connection: that failed a CI run)."""

    def __init__(self) -> None:
        self.emu = Emulator()
        self.port = self.smtp_port = 0
        self.url = ""

    async def __aenter__(self) -> Emulators:
        self.runner = web.AppRunner(self.emu.app(), access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.smtp = await asyncio.start_server(SmtpServer(self.emu).handle, "127.0.0.1", 0)
        self.smtp_port = self.smtp.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.smtp.close()
        await self.runner.cleanup()

    def count(self, provider: str, account: str, what: str = "delivered") -> int:
        return self.emu.book.counts[(provider, account)][what]

    async def fault(self, **f: Any) -> None:
        async with aiohttp.ClientSession() as s:
            await (await s.post(f"{self.url}/_emulator/faults", json=f)).read()


def settings_for(k: KafkaSettings, emu: Emulators, **kw: Any) -> EgressSettings:
    return EgressSettings(kafka=k, emulator_url=emu.url, emulator_smtp=f"127.0.0.1:{emu.smtp_port}",
                          group_id="egress-test", call_timeout_s=2.0, backoff_base_s=0.05, backoff_max_s=0.5,
                          poll_ms=5, commit_interval_ms=100, **kw)


async def until(cond: Any, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(0.2)
    return cond()


class Running:
    """An Egress running in this event loop until the block ends."""

    def __init__(self, s: EgressSettings, hub: Hub | None = None) -> None:
        self.accounts = send_accounts.parse(ACCOUNTS, {})
        self.hub = hub or Hub(accounts=self.accounts)
        sender = Sender(emulator_url=s.emulator_url, emulator_smtp=s.emulator_smtp, timeout_s=s.call_timeout_s,
                        hub=self.hub)
        self.egress = Egress(s, self.accounts, sender=sender)
        self.stop = asyncio.Event()

    async def __aenter__(self) -> Egress:
        self.task = asyncio.create_task(self.egress.run(self.stop))
        return self.egress

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)


async def test_every_channel_is_delivered_once(applied_topics: KafkaSettings) -> None:
    k = applied_topics
    inbound = [make_received(ch, 1) for ch in ("whatsapp", "messenger", "instagram", "wechat")]
    sent = [make_sent(ch, 1) for ch in ROUTES]
    produce(k, inbound + sent + sent[:3])  # the first three twice: a redelivered input
    async with Emulators() as emu, Running(settings_for(k, emu)) as egress:
        ok = await until(lambda: len(final(outcomes(k))) == len(sent), 40)
        done = final(outcomes(k))
        assert ok, {e["channel"]: e.get("reason") for e in done.values()}
    for e in sent:
        out = done[e["envelope"]["event_id"]]
        assert out["envelope"]["event_type"] == "OutboundSent", (e["channel"], out.get("reason"))
        assert out["channel_message_id"]
    for ch, (_, _, provider, account) in ROUTES.items():
        if provider:
            assert emu.count(provider, account) == 1, (ch, dict(emu.emu.book.counts[(provider, account)]))
            assert emu.count(provider, account, "duplicates") == 0
    assert egress.sender.hub.pushed == 1


async def test_refusals_are_permanent_failures_with_reasons(applied_topics: KafkaSettings) -> None:
    k = applied_topics
    late = T0 + 30 * 3_600_000  # 31 h after the customer wrote: the WhatsApp window is closed
    cases = [
        make_sent("whatsapp", 10, at=late),
        make_sent("whatsapp", 11, at=late, kind="template", template_name="no_such_template"),
        make_sent("whatsapp", 12, at=late, content={"text": None, "media": [], "buttons": [], "quick_replies": [],
                                                   "list": None, "cards": [], "location": None, "subject": None,
                                                   "template": {"name": "order_update", "language": "en",
                                                                "parameters": ["A-1"]}}),
        make_sent("telegram", 13, channel_account_id="unknown-bot"),
        make_sent("telegram", 14, text=None, attachments=[{"kind": "video", "media_id": None, "url": "https://x/v.mp4",
                                                           "mime_type": "video/mp4", "size_bytes": 900 * 2**20,
                                                           "sha256": None, "caption": None, "filename": None}]),
        make_sent("whatsapp", 15, at=late, content={"text": None, "media": [], "buttons": [], "quick_replies": [],
                                                   "list": None, "cards": [], "location": None, "subject": None,
                                                   "template": {"name": "order_update", "language": "en",
                                                                "parameters": ["A-1", "Monday"]}}),
    ]
    produce(k, [make_received("whatsapp", 1)] + cases)
    async with Emulators() as emu, Running(settings_for(k, emu)):
        await until(lambda: len(final(outcomes(k))) == len(cases), 30)
    done = final(outcomes(k))
    codes = [done[c["envelope"]["event_id"]].get("code") for c in cases]
    assert codes == ["window_closed", "template_unknown", "template_parameters", "unknown_account",
                     "media_too_large", None]
    closed = done[cases[0]["envelope"]["event_id"]]
    assert "closed at" in closed["reason"] and "order_update" in closed["reason"] and closed["permanent"]
    assert emu.count("whatsapp", "106540352242922") == 1  # only the valid template went out


async def test_transient_errors_are_retried_and_permanent_ones_are_not(applied_topics: KafkaSettings) -> None:
    k = applied_topics
    async with Emulators() as emu:
        await emu.fault(provider="telegram", kind="status", status=502, count=2)
        await emu.fault(provider="viber", kind="rate_limit", count=1)
        await emu.fault(provider="whatsapp", kind="error", code=131047, count=1)
        await emu.fault(provider="line", kind="garbage", count=1)
        produce(k, [make_received("whatsapp", 1), make_sent("telegram", 1), make_sent("viber", 1),
                    make_sent("whatsapp", 1), make_sent("line", 1)])
        async with Running(settings_for(k, emu)):
            await until(lambda: len(final(outcomes(k))) == 4, 30)
    evs = outcomes(k)
    done = final(evs)
    by = {e["channel"]: e for e in done.values()}
    assert by["telegram"]["envelope"]["event_type"] == "OutboundSent" and by["telegram"]["attempt"] == 3
    assert by["viber"]["envelope"]["event_type"] == "OutboundSent" and by["viber"]["attempt"] == 2
    assert by["whatsapp"]["code"] == "131047" and by["whatsapp"]["permanent"] and by["whatsapp"]["attempt"] == 1
    assert by["line"]["code"] == "provider_garbage" and by["line"]["attempt"] == 1
    attempts = [e for e in evs if e["envelope"]["event_type"] == "OutboundAttempted" and e["channel"] == "telegram"]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]


async def test_a_restart_sends_nothing_twice(applied_topics: KafkaSettings) -> None:
    k = applied_topics
    batch = [make_sent("telegram", n) for n in range(20)]
    produce(k, batch)
    async with Emulators() as emu:
        async with Running(settings_for(k, emu)):
            await until(lambda: len(final(outcomes(k))) == 20, 30)
        produce(k, batch[:5])  # the same messages again, after the restart's offsets
        s = settings_for(k, emu)
        async with Running(s):
            assert await until(handled(k, s), 30), "the restart did not read the five again"
        assert emu.count("telegram", "7012345678:AAemu") == 20


async def test_the_agent_api_window_book_follows_the_windows_the_egress_writes(applied_topics: KafkaSettings) -> None:
    from adapters.accounts import Accounts
    from adapters.windows import WindowBook

    k = applied_topics
    produce(k, [make_received("whatsapp", 1, at=T0 - 30 * 3_600_000), make_received("messenger", 2, at=T0 - 3_600_000)])
    async with Emulators() as emu, Running(settings_for(k, emu)):
        book = WindowBook(k, Accounts([]))
        await book.start()
        try:
            assert await until(lambda: book.loaded and len(book.times) == 2, 30)
        finally:
            await book.stop()
    assert "closed at" in book.refusal(make_sent("whatsapp", 1))
    assert book.refusal(make_sent("messenger", 2)) is None


async def test_a_throttled_account_does_not_slow_the_others(applied_topics: KafkaSettings) -> None:
    k = applied_topics
    throttled = [make_sent("telegram", n, customer=f"t{n}", recipient=identity("telegram", str(1000 + n)))
                 for n in range(40)]
    others = [make_sent("telegram", 100 + n, customer=f"o{n}", channel_account_id="7099999999",
                        recipient=identity("telegram", str(2000 + n))) for n in range(40)]
    async with Emulators() as emu:
        await emu.fault(provider="telegram", account="7012345678:AAemu", kind="rate_limit", retry_after=2.0, count=5)
        mixed = [m for pair in zip(throttled, others, strict=True) for m in pair]
        produce(k, mixed)
        async with Running(settings_for(k, emu)):
            t0 = time.time()
            await until(lambda: emu.count("telegram", "7099999999:AAother") == 40, 20)
            others_done = time.time() - t0
            await until(lambda: emu.count("telegram", "7012345678:AAemu") == 40, 30)
            throttled_done = time.time() - t0
        arrivals = {m["text"]: m["at"] for m in emu.emu.book.messages}
    assert emu.count("telegram", "7099999999:AAother") == 40 and emu.count("telegram", "7012345678:AAemu") == 40
    first = min(arrivals.values())
    other_last = max(arrivals[m["text"]] for m in others) - first
    throttled_last = max(arrivals[m["text"]] for m in throttled) - first
    # the other bot's 40 messages went out at once; the throttled one waited out its Retry-Afters
    assert other_last < 1.0 and throttled_last >= 2.0, (other_last, throttled_last, others_done, throttled_done)
    evs = [e for e in outcomes(k) if e["envelope"]["event_type"] == "OutboundFailed"]
    assert evs and all(e["channel_account_id"] == "7012345678" and not e["final"] for e in evs)


async def test_a_stop_lets_calls_in_progress_finish(applied_topics: KafkaSettings) -> None:
    k = applied_topics
    async with Emulators() as emu:
        await emu.fault(provider="telegram", kind="slow", delay_s=1.0)
        produce(k, [make_sent("telegram", n, customer=f"s{n}") for n in range(5)])
        async with Running(settings_for(k, emu)):
            await until(lambda: emu.emu.book.counts[("telegram", "7012345678:AAemu")]["requests"] == 5, 20)
        # the block ended (a stop) while the five calls were in progress: each finished and was recorded
        done = final(outcomes(k))
        assert len(done) == 5 and all(e["envelope"]["event_type"] == "OutboundSent" for e in done.values())
        s = settings_for(k, emu)
        async with Running(s):
            assert await until(handled(k, s), 30), "the next run did not read its input"
        assert emu.count("telegram", "7012345678:AAemu") == 5  # nothing sent again by the next run


async def test_a_partition_moved_between_egresses_keeps_its_windows(applied_topics: KafkaSettings) -> None:
    """Two egresses split the partitions; the customers write (each egress writes the windows of
    its partitions); the first stops, the second takes every partition: it must know the windows
    the first wrote after it had started, or it would refuse in-window replies."""
    k = applied_topics
    customers = [(f"w{i}", str(33600000000 + i)) for i in range(24)]
    async with Emulators() as emu:
        async with Running(settings_for(k, emu, instance_id="e-2")) as two:
            async with Running(settings_for(k, emu, instance_id="e-1")) as one:
                await until(lambda: bool(one.offsets) and len(two.offsets) < 12, 30)  # the group split
                produce(k, [make_received("whatsapp", n, customer=c, sender=identity("whatsapp", rid))
                            for n, (c, rid) in enumerate(customers)])
                await until(lambda: one.stats.read + two.stats.read >= 24, 20)
            await until(lambda: len(two.offsets) == 12 and not two.to_load, 30)  # the second has them all
            produce(k, [make_sent("whatsapp", 500 + n, customer=c, recipient=identity("whatsapp", rid))
                        for n, (c, rid) in enumerate(customers)])
            await until(lambda: len(final(outcomes(k))) == 24, 30)
        done = final(outcomes(k))
    assert sorted(e["envelope"]["event_type"] for e in done.values()) == ["OutboundSent"] * 24, \
        {e.get("code") for e in done.values()}
    assert emu.count("whatsapp", "106540352242922") == 24
    assert emu.count("whatsapp", "106540352242922", "duplicates") == 0
