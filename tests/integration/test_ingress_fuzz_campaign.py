"""A fuzz campaign against the running ingress and the real broker: mutated real payloads on every
route, signed and unsigned (issue 10).

The service runs as `parley ingress` does (``adapters.app.serve``, a child process, the example
accounts); a lean keep-alive client sends real-shaped requests of every channel, each mutated:
JSON trees (keys dropped, values of another type, huge strings, deep nesting), XML, forms and
multipart bodies, raw bytes (flips, truncation, insertion), routes (unknown adapters and accounts,
GETs, query strings), the agent API with random bodies, and a share of broken HTTP. About 60% of
the webhook requests are signed *after* mutation (so the parsers see them), 20% keep the signature
of the unmutated body, 20% lose or garble it.

The property: no answer 5xx but the documented 503 (Kafka not acknowledging, or another delivery
of the same ids being stored), the process never dies, it is still ready at the end, and no event
id is twice on parley.messages or the raw topic.

In CI it runs 2,000 requests. The campaign: ``PARLEY_FUZZ_REQUESTS=100000`` (and ``PARLEY_FUZZ_SEED``)
with the usual broker variables, ``-s`` to see the report.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import multiprocessing
import os
import random
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from confluent_kafka import Consumer, TopicPartition
from twilio.request_validator import RequestValidator

from parley.settings import IngressSettings, KafkaSettings, LogSettings
from schemas import topics

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "accounts.example.toml"
PUBLIC = "https://hooks.example.com"
AGENT_TOKEN = "fuzz-agent-token"
DOCUMENTED_503 = ("not stored: another delivery", "not stored: Kafka", "not stored: not connected",
                  "not stored: all brokers", "not stored: the claim log")
SECRETS = {"whatsapp": "demo-meta-app-secret", "messenger": "demo-meta-app-secret",
           "instagram": "demo-meta-app-secret", "twilio": "demo-twilio-auth-token",
           "telegram": "demo-telegram-secret-token", "line": "demo-line-channel-secret",
           "viber": "demo-viber-auth-token", "wechat": "demo-wechat-token", "rbm": "demo-rbm-client-token",
           "email": "demo-email-parse-password", "webchat": "demo-webchat-token"}
ACCOUNT = {"whatsapp": "106540352242922", "messenger": "1029384756473829", "instagram": "17841405822304914",
           "twilio": "+33644600000", "telegram": "7012345678", "line": "U4af4980629abcdef0123456789abcdef",
           "viber": "acmesupport", "wechat": "gh_3f2a1b4c5d6e", "rbm": "acme-support",
           "email": "support@acme.example", "webchat": "acme-web"}


# -- real-shaped payloads -----------------------------------------------------------------------

def seed(channel: str, r: random.Random, now_s: int) -> Any:
    """A document (JSON tree, XML fields, form params, multipart fields) of ``channel``."""
    n, user = r.randrange(10**9), f"{r.randrange(10**6)}"
    if channel == "whatsapp":
        return {"object": "whatsapp_business_account", "entry": [{"id": "W", "changes": [{
            "field": "messages", "value": {
            "messaging_product": "whatsapp", "metadata": {"phone_number_id": ACCOUNT["whatsapp"]},
            "contacts": [{"profile": {"name": "Zoé"}, "wa_id": "336" + user}],
            "messages": [{"from": "336" + user, "id": f"wamid.{n}", "timestamp": str(now_s),
                          "type": r.choice(["text", "image", "location", "interactive", "reaction"]),
                          "text": {"body": "Bonjour"}, "image": {"id": "1", "mime_type": "image/jpeg"},
                          "location": {"latitude": 1.5, "longitude": 2}, "interactive": {"type": "button_reply",
                          "button_reply": {"id": "b", "title": "Oui"}},
                          "reaction": {"message_id": "x", "emoji": "👍"}}],
            "statuses": [{"id": f"wamid.{n}", "status": "read", "timestamp": str(now_s),
                          "recipient_id": "336" + user}]}}]}]}
    if channel in ("messenger", "instagram"):
        return {"object": "page" if channel == "messenger" else "instagram", "entry": [{"id": ACCOUNT[channel],
                "time": now_s * 1000, "messaging": [{"sender": {"id": user}, "recipient": {"id": ACCOUNT[channel]},
                "timestamp": now_s * 1000, "message": {"mid": f"m_{n}", "text": "Hi", "attachments": [
                    {"type": "image", "payload": {"url": "https://x/y.jpg"}}]}}]}]}
    if channel == "telegram":
        return {"update_id": n, "message": {"message_id": n % 10**6, "date": now_s, "text": "Salut",
                                            "from": {"id": int(user), "first_name": "Z"}, "chat": {"id": int(user)}}}
    if channel == "line":
        return {"destination": ACCOUNT["line"], "events": [{"type": "message", "webhookEventId": f"E{n}",
                "timestamp": now_s * 1000, "source": {"type": "user", "userId": "U" + user},
                "deliveryContext": {"isRedelivery": False}, "message": {"type": "text", "id": str(n), "text": "Hi"}}]}
    if channel == "viber":
        return {"event": "message", "timestamp": now_s * 1000, "message_token": n, "sender": {"id": user, "name": "Z"},
                "message": {"type": "text", "text": "Hi"}}
    if channel == "rbm":
        return {"senderPhoneNumber": "+336" + user.zfill(8), "messageId": f"M{n}", "agentId": ACCOUNT["rbm"],
                "sendTime": "2026-11-30T10:00:00.000Z", "text": "Bonjour"}
    if channel == "webchat":
        return {"type": "message", "message_id": f"m-{n}", "visitor_id": f"v-{user}", "text": "Bonjour",
                "sent_at": now_s * 1000}
    if channel == "wechat":
        return {"ToUserName": ACCOUNT["wechat"], "FromUserName": "o" + user, "CreateTime": str(now_s),
                "MsgType": r.choice(["text", "image", "event", "location"]), "Content": "你好", "MsgId": str(n),
                "Event": "CLICK", "PicUrl": "http://x/y.jpg"}
    if channel == "twilio":
        return {"MessageSid": f"SM{n:032d}", "AccountSid": "AC" + "1" * 32, "From": "+336" + user.zfill(8),
                "To": ACCOUNT["twilio"], "Body": "Bonjour", "NumMedia": "0"}
    if channel == "email":
        return {"from": "Zoé <zoe@example.fr>", "to": ACCOUNT["email"], "subject": "Commande", "text": "Bonjour",
                "headers": f"Message-ID: <{n}@example.fr>\nFrom: zoe@example.fr\n",
                "envelope": json.dumps({"to": [ACCOUNT["email"]], "from": "zoe@example.fr"})}
    raise KeyError(channel)


# -- mutations ----------------------------------------------------------------------------------

JUNK = ["", None, 0, -1, 2**70, 1.5e308, True, [], {}, "\u0000", "\ud800", "é" * 5, "<script>", "A" * 70_000,
        "whatsapp:+", "+0", "1e999", "[]", "{}", "%FF", "|", "..", "\n\r"]


def mutate_tree(doc: Any, r: random.Random, rounds: int) -> Any:
    for _ in range(rounds):
        doc = _mutate_once(doc, r)
    return doc


def _mutate_once(node: Any, r: random.Random) -> Any:
    if isinstance(node, dict) and node and r.random() < 0.7:
        key = r.choice(list(node))
        action = r.random()
        if action < 0.2:
            node.pop(key)
        elif action < 0.6:
            node[key] = _mutate_once(node[key], r)
        elif action < 0.9:
            node[key] = r.choice(JUNK)
        else:
            node[r.choice(["extra", key + "_", "type", "id"])] = r.choice(JUNK)
        return node
    if isinstance(node, list) and node and r.random() < 0.7:
        i = r.randrange(len(node))
        choice = r.random()
        if choice < 0.3:
            node.append(node[i] if r.random() < 0.5 else r.choice(JUNK))
        elif choice < 0.5:
            node.pop(i)
        else:
            node[i] = _mutate_once(node[i], r)
        return node
    if r.random() < 0.05:
        return [[[[node]]]] if r.random() < 0.5 else {"a": {"b": {"c": node}}}
    return r.choice(JUNK)


def mutate_bytes(data: bytes, r: random.Random) -> bytes:
    data = bytearray(data)
    for _ in range(r.randint(1, 4)):
        op = r.random()
        if not data or op < 0.3:
            data[r.randrange(len(data) + 1):r.randrange(len(data) + 1)] = os.urandom(r.randint(1, 8))
        elif op < 0.6:
            data[r.randrange(len(data))] ^= 1 << r.randrange(8)
        else:
            del data[r.randrange(len(data)):]
    return bytes(data)


def _json(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


def _hmac(key: str, data: bytes, digest=hashlib.sha256) -> bytes:
    return hmac.new(key.encode(), data, digest).digest()


def build(channel: str, r: random.Random, now_s: int) -> tuple[str, str, dict[str, str], bytes]:
    """(method, path with query, headers, body) of one fuzzed request of ``channel``."""
    doc = seed(channel, r, now_s)
    if r.random() < 0.85:
        doc = mutate_tree(doc, r, r.randint(1, 4))
    sign = r.random()  # < 0.6: signed after mutation; < 0.8: the signature of the unmutated body
    path, query, headers, body = f"/webhooks/{channel}/{quote(ACCOUNT[channel], safe='@+:.-_')}", {}, {}, b""
    secret = SECRETS[channel]
    if channel == "wechat":
        fields = doc.items() if isinstance(doc, dict) else []
        xml = "<xml>" + "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields) + "</xml>"
        body = xml.encode("utf-8", "surrogatepass")
        nonce, ts = str(r.randrange(10**9)), str(now_s + r.choice([0, 0, 0, -400, 10**6]))
        query = {"signature": hashlib.sha1("".join(sorted([secret, ts, nonce])).encode()).hexdigest(),
                 "timestamp": ts, "nonce": nonce}
        headers["Content-Type"] = "text/xml"
    elif channel == "twilio":
        params = {str(k): str(v) for k, v in doc.items()} if isinstance(doc, dict) else {}
        body = urlencode(params, errors="surrogatepass").encode()
        printable = {k: v.encode("utf-8", "replace").decode() for k, v in params.items()}
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        headers["X-Twilio-Signature"] = RequestValidator(secret).compute_signature(PUBLIC + path, printable)
    elif channel == "email":
        fields = doc.items() if isinstance(doc, dict) else []
        body = b"".join(f'--B\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                        .encode("utf-8", "surrogatepass") for k, v in fields) + b"--B--\r\n"
        headers["Content-Type"] = "multipart/form-data; boundary=B"
        headers["Authorization"] = "Basic " + base64.b64encode(f"parse:{secret}".encode()).decode()
    elif channel == "rbm":
        inner = _json(doc)
        body = _json({"message": {"data": base64.b64encode(inner).decode(), "messageId": "1"}})
        headers["X-Goog-Signature"] = base64.b64encode(_hmac(secret, inner, hashlib.sha512)).decode()
    else:
        body = _json(doc)
        headers["Content-Type"] = "application/json"
        if channel in ("whatsapp", "messenger", "instagram"):
            headers["X-Hub-Signature-256"] = "sha256=" + _hmac(secret, body).hex()
        elif channel == "line":
            headers["x-line-signature"] = base64.b64encode(_hmac(secret, body)).decode()
        elif channel == "viber":
            headers["X-Viber-Content-Signature"] = _hmac(secret, body).hex()
        elif channel == "telegram":
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        elif channel == "webchat":
            headers["Authorization"] = f"Bearer {secret}"
    if sign >= 0.6 and r.random() < 0.5:
        body = mutate_bytes(body, r)  # after signing: the signature no longer matches
    if sign >= 0.8:
        headers = {k: (v[:-3] + "xyz" if r.random() < 0.5 else "") for k, v in headers.items() if k != "Content-Type"}
    method = "POST" if r.random() < 0.95 else "GET"
    return method, path + ("?" + urlencode(query) if query else ""), headers, body


def build_other(r: random.Random) -> tuple[str, str, dict[str, str], bytes]:
    """Routes beside the channels': unknown adapters and accounts, the agent API, health."""
    choice = r.random()
    if choice < 0.3:
        adapter, account = r.choice(["nope", "whatsapp", "x" * 300]), r.choice(["999", "%2e%2e", "a" * 500])
        return "POST", f"/webhooks/{adapter}/{account}", {}, b"{}"
    if choice < 0.8:
        route = r.choice(["/agents/acme/ines/status", "/agents/acme/ines/replies",
                          "/agents/acme/ines/threads/t1/resolve",
                          "/agents/acme/ines/threads/t1/transfer", "/customers/acme/c-1/context",
                          "/agents/acme/ines/identities/link", "/agents/acme/ines/customers/merge",
                          "/agents/nobody/x/status"])
        doc = mutate_tree({"presence": "online", "message_id": f"out-{r.randrange(10**6)}", "channel": "webchat",
                           "channel_account_id": "acme-web", "recipient": {"id": "v-1"}, "text": "ok",
                           "customer_id": "c-1", "to_queue": "q", "occurred_at": 1731400000000}, r, r.randint(0, 3))
        headers = {"Authorization": f"Bearer {AGENT_TOKEN}"} if r.random() < 0.8 else {}
        return "POST", route, headers, _json(doc)
    return "GET", r.choice(["/healthz", "/readyz", "/metrics", "/", "/webhooks"]), {}, b""


# -- the client ---------------------------------------------------------------------------------

def http(method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: hooks.example.com\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items() if "\r" not in v and "\n" not in v)
    return head.encode("utf-8", "surrogatepass") + b"\r\n" + body


async def _one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    buf = b""
    while (end := buf.find(b"\r\n\r\n")) < 0:
        chunk = await reader.read(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    head = buf[:end].lower()
    at = head.find(b"content-length:")
    length = int(head[at + 15:head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0 else None]) if at >= 0 else 0
    while len(buf) < end + 4 + length:
        chunk = await reader.read(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return int(head[9:12]), buf[end + 4:end + 4 + length]


async def campaign(port: int, total: int, seed_: int, concurrency: int = 32) -> dict[str, Any]:
    r = random.Random(seed_)
    channels = list(ACCOUNT)
    statuses: Counter = Counter()
    fives: Counter = Counter()
    broken = Counter()
    counter = iter(range(total))

    async def worker(wr: random.Random) -> None:
        conn = None
        for _ in counter:
            now_s = int(time.time())
            if wr.random() < 0.01:  # broken HTTP on a connection of its own
                try:
                    rd, w = await asyncio.open_connection("127.0.0.1", port)
                    w.write(wr.choice([b"GARBAGE\r\n\r\n", b"POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
                                       b"POST /webhooks/x/y HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"]))
                    await asyncio.wait_for(rd.read(1024), 5)
                    w.close()
                    broken["sent"] += 1
                except (TimeoutError, OSError):
                    broken["no answer"] += 1
                continue
            req = build(wr.choice(channels), wr, now_s) if wr.random() < 0.9 else build_other(wr)
            for attempt in range(2):
                try:
                    if conn is None:
                        conn = await asyncio.open_connection("127.0.0.1", port)
                    status, body = await asyncio.wait_for(_one(*conn, http(*req)), 30)
                    break
                except (ConnectionError, OSError, asyncio.IncompleteReadError):
                    conn = None  # the server may close a connection after a 4xx: reconnect once
                    if attempt:
                        status, body = -1, b"connection lost"
            statuses[status] += 1
            if status >= 500:
                reason = (json.loads(body).get("reason", "") if body.startswith(b"{")
                          else body[:80].decode("utf-8", "replace"))
                documented = status == 503 and reason.startswith(DOCUMENTED_503)
                fives[("documented 503: " if documented else f"{status} ") + reason[:70]] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(random.Random(r.random())) for _ in range(concurrency)))
    return {"requests": total, "seconds": round(time.perf_counter() - t0, 1),
            "statuses": dict(sorted(statuses.items())), "5xx": dict(fives), "broken_http": dict(broken)}


def _serve(settings: IngressSettings) -> None:
    from adapters.app import serve

    serve(settings)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _ready(port: int, timeout_s: float = 60) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            conn = await asyncio.open_connection("127.0.0.1", port)
            status, _ = await _one(*conn, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            conn[1].close()
            if status == 200:
                return True
        except OSError:
            pass
        await asyncio.sleep(0.2)
    return False


def _duplicates(kafka: KafkaSettings, topic: topics.Topic) -> tuple[int, int]:
    """(records, event ids seen more than once) of a whole topic."""
    from schemas.codec import Codec

    name = topics.named(kafka.topic_prefix, topic)
    consumer = Consumer(kafka.librdkafka_config(**{"group.id": f"fuzz-{os.getpid()}", "enable.auto.commit": False}))
    codec, seen, dups, records = Codec(), set(), 0, 0
    try:
        meta = consumer.list_topics(name, timeout=10)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1]
                for p in meta.topics[name].partitions}
        consumer.assign([TopicPartition(name, p, 0) for p in ends])
        left = {p for p, end in ends.items() if end > 0}
        while left:
            for msg in consumer.consume(1000, timeout=1):
                if msg.error():
                    continue
                records += 1
                event_id = codec.decode(msg.value())["envelope"]["event_id"]
                dups += event_id in seen
                seen.add(event_id)
                if msg.offset() + 1 >= ends[msg.partition()]:
                    left.discard(msg.partition())
    finally:
        consumer.close()
    return records, dups


def test_fuzz_campaign_every_route_against_the_running_ingress(applied_topics, tmp_path) -> None:
    total = int(os.environ.get("PARLEY_FUZZ_REQUESTS", "2000"))
    seed_ = int(os.environ.get("PARLEY_FUZZ_SEED", "10"))
    port = _free_port()
    settings = IngressSettings(host="127.0.0.1", port=port, accounts_file=EXAMPLE, kafka=applied_topics,
                               public_base_url=PUBLIC, agent_tokens=[AGENT_TOKEN],
                               log=LogSettings(level="ERROR", format="json"))
    child = multiprocessing.get_context("spawn").Process(target=_serve, args=(settings,), daemon=True)
    child.start()
    try:
        assert asyncio.run(_ready(port)), "the ingress never became ready"
        report = asyncio.run(campaign(port, total, seed_))
        alive = child.is_alive()
        still_ready = asyncio.run(_ready(port, 30))
    finally:
        child.terminate()
        child.join(15)
    report["messages"] = _duplicates(applied_topics, topics.MESSAGES)
    report["raw"] = _duplicates(applied_topics, topics.RAW_INGRESS)
    print("\nfuzz campaign:", json.dumps(report, indent=1, default=str))
    assert alive and still_ready, "the ingress died or stopped being ready"
    assert sum(report["statuses"].values()) + sum(report["broken_http"].values()) == total
    assert not [k for k in report["5xx"] if not k.startswith("documented 503")], report["5xx"]
    assert report["messages"][1] == 0 and report["raw"][1] == 0, "an event id twice on a topic"
    assert report["statuses"].get(200, 0) > total // 10  # the parsers were reached, not just the verifiers
