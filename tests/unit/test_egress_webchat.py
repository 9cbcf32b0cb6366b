"""The web chat push hub (WebSocket and SSE, token, backlog for a reconnecting widget) and the
RBM service-account token (a JWT assertion signed with the account's key) against the emulator."""

from __future__ import annotations

import hashlib
import hmac
import json

import orjson
from aiohttp import web

from egress import accounts as send_accounts
from egress.model import SendAccount
from egress.sender import Sender
from egress.webchat import Hub
from parley.app.emulator.providers import Emulator

ACCOUNTS = send_accounts.parse({"accounts": [
    {"tenant": "acme", "adapter": "webchat", "account_id": "acme-web", "options": {"send": {"push_key": "k"}}},
    {"tenant": "acme", "adapter": "webchat", "account_id": "open-web", "options": {}}]}, {})


def token(account: str, user: str) -> str:
    return hmac.new(b"k", f"{account}|{user}".encode(), hashlib.sha256).hexdigest()


def push_body(n: int, account: str = "acme-web", user: str = "u1") -> dict:
    return {"id": f"ev-{n}", "message_id": f"m{n}", "account": account, "user": user, "occurred_at": n,
            "author_type": "agent", "thread_id": "th", "parts": [{"type": "text", "text": f"hello {n}"}]}


async def hub_client(client_for) -> tuple[Hub, object]:
    hub = Hub(keep=3, accounts=ACCOUNTS)
    app = web.Application()
    hub.routes(app)
    return hub, await client_for(app)


async def test_websocket_gets_pushes_and_the_backlog(client_for) -> None:
    hub, client = await hub_client(client_for)
    assert (await hub.push(push_body(1))).ok
    ws = await client.ws_connect(f"/webchat/acme-web/u1/ws?token={token('acme-web', 'u1')}")
    assert orjson.loads((await ws.receive()).data)["id"] == "ev-1"  # kept while nobody was connected
    result = await hub.push(push_body(2))
    assert result.ok and result.ids == ("ev-2",)
    assert orjson.loads((await ws.receive()).data)["parts"][0]["text"] == "hello 2"
    await ws.close()


async def test_a_bad_token_is_refused(client_for) -> None:
    _, client = await hub_client(client_for)
    resp = await client.get("/webchat/acme-web/u1/events?token=nope")
    assert resp.status == 401
    other = {"Authorization": f"Bearer {token('acme-web', 'u1')}"}
    assert (await client.get("/webchat/acme-web/u2/events", headers=other)).status == 401


async def test_sse_replays_what_came_after_last_event_id(client_for) -> None:
    hub, client = await hub_client(client_for)
    for n in range(1, 5):
        await hub.push(push_body(n, "open-web"))  # keeps the last 3: ev-2, ev-3, ev-4
    resp = await client.get("/webchat/open-web/u1/events", headers={"Last-Event-ID": "ev-2"})
    assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
    chunk = b""
    while chunk.count(b"\n\n") < 2:
        chunk += await resp.content.readany()
    events = [json.loads(line[6:]) for line in chunk.decode().splitlines() if line.startswith("data: ")]
    assert [e["id"] for e in events] == ["ev-3", "ev-4"]
    resp.close()


async def test_rbm_service_account_token_is_fetched_with_a_signed_assertion(client_for, tmp_path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    sa = tmp_path / "sa.json"
    sa.write_text(json.dumps({"client_email": "bot@acme.iam.example", "private_key": pem,
                              "token_uri": "https://oauth2.example/token"}))
    client = await client_for(Emulator().app())
    sender = Sender(emulator_url=str(client.make_url("")).rstrip("/"))
    await sender.start()
    try:
        account = SendAccount("acme", "rbm", "agent", {"service_account_file": str(sa), "agent_id": "agent"})
        first = await sender.token(account)
        assert first.startswith("ya29.EMU") and await sender.token(account) == first  # held, not fetched again
    finally:
        await sender.close()
