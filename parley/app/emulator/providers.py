"""Provider emulators: every provider's send API on one local HTTP server (and an SMTP server).

For tests, the benchmark and the demo (``parley egress emulator``). Each route answers with the
provider's documented shapes: WhatsApp Cloud API and Messenger/Instagram (Graph API), Twilio
Messages.json, Telegram Bot API, LINE push (``X-Line-Retry-Key``: a repeated key answers 409 and
is not delivered again), Viber send_message, WeChat token + custom/template send, RBM
agentMessages (a repeated ``messageId`` answers 409 ALREADY_EXISTS) and its OAuth token, and
e-mail over SMTP. The official SDKs work against it as clients (tests/unit/test_egress_emulator.py).

Faults (``POST /_emulator/faults``): ``{"provider", "account"?, "kind", "count"? | "ratio"?, ...}``
with kind ``slow`` (answers normally after ``delay_s``), ``rate_limit`` (the provider's 429 or
in-body equivalent, ``retry_after``), ``status`` (``status``: an HTTP status, or an SMTP code
for e-mail), ``timeout`` (the message is delivered,
then the answer waits ``delay_s``: the caller times out not knowing), ``garbage`` (200 with a body
that is no answer), ``error`` (the provider's error ``code``, e.g. 131047). Counters
(``GET /_emulator/counts``): per provider and account, requests, delivered, refused (faults),
replays refused by an idempotency key, and duplicates (the same request delivered twice).
``GET /_emulator/messages`` lists what was delivered (with arrival times); ``POST /_emulator/reset``.
With ``receipts`` (``emulator_receipts.py``) the accepted messages' delivery receipts are posted
to the ingress, signed as each provider signs its webhooks.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import web


@dataclass
class Fault:
    provider: str
    kind: str
    account: str | None = None
    count: int | None = None  # how many requests it hits (None: every one, or by ratio)
    ratio: float | None = None
    status: int = 500
    code: Any = None
    retry_after: float = 1.0
    delay_s: float = 15.0

    def hits(self, provider: str, account: str, rng: random.Random) -> bool:
        if provider != self.provider or (self.account and self.account != account):
            return False
        if self.count is not None:
            if self.count <= 0:
                return False
            self.count -= 1
            return True
        return self.ratio is None or rng.random() < self.ratio


@dataclass
class Book:
    """What the emulator received."""

    counts: dict[tuple[str, str], Counter] = field(default_factory=lambda: defaultdict(Counter))
    bodies: dict[str, int] = field(default_factory=dict)  # request hash -> deliveries
    keys: dict[str, list[str]] = field(default_factory=dict)  # idempotency key -> ids delivered
    messages: list[dict[str, Any]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    seq: itertools.count = field(default_factory=lambda: itertools.count(1))


class Emulator:
    def __init__(self, seed: int = 1, receipts: Any = None) -> None:
        self.book = Book()
        self.rng = random.Random(seed)
        self.tokens: set[str] = set()
        self.receipts = receipts  # emulator_receipts.Receipts: status webhooks to the ingress, or None

    def _receipt(self, provider: str, account: str, to: str, provider_id: str, sender: str | None = None) -> None:
        if self.receipts is not None:
            self.receipts.after(provider, account, to, provider_id, sender)

    # --- bookkeeping ---------------------------------------------------------------------------

    def _fault(self, provider: str, account: str) -> Fault | None:
        return next((f for f in self.book.faults if f.hits(provider, account, self.rng)), None)

    def _deliver(self, provider: str, account: str, to: str, text: str, raw: bytes, key: str | None = None) -> str:
        c = self.book.counts[(provider, account)]
        c["delivered"] += 1
        digest = hashlib.sha256(provider.encode() + account.encode() + raw).hexdigest()
        seen = self.book.bodies.get(digest, 0)
        if seen:
            c["duplicates"] += 1
        self.book.bodies[digest] = seen + 1
        n = next(self.book.seq)
        self.book.messages.append({"provider": provider, "account": account, "to": to, "text": text, "key": key,
                                   "at": time.time(), "n": n})
        return str(n)

    def _replayed(self, provider: str, account: str, key: str | None) -> list[str] | None:
        if key and key in self.book.keys:
            self.book.counts[(provider, account)]["key_replays"] += 1
            return self.book.keys[key]
        return None

    async def _faulted(self, provider: str, account: str, to: str, text: str, raw: bytes) -> web.Response | None:
        """The faulty answer, if a fault hits this request (a timeout delivers, then stalls)."""
        self.book.counts[(provider, account)]["requests"] += 1
        f = self._fault(provider, account)
        if f is None:
            return None
        if f.kind == "slow":  # answers normally, late
            await asyncio.sleep(f.delay_s)
            return None
        if f.kind == "timeout":
            self._deliver(provider, account, to, text, raw)
            await asyncio.sleep(f.delay_s)
            return web.json_response({"late": True})
        self.book.counts[(provider, account)]["refused"] += 1
        if f.kind == "garbage":
            return web.Response(status=200, text="<html><body>502 upstream oops</body></html>",
                                content_type="text/html")
        return ERRORS[provider](f)

    # --- Meta ----------------------------------------------------------------------------------

    async def whatsapp(self, r: web.Request) -> web.Response:
        raw, account = await r.read(), r.match_info["account"]
        if not r.headers.get("Authorization", "").startswith("Bearer "):
            return web.json_response({"error": {"message": "missing token", "type": "OAuthException", "code": 190}},
                                     status=401)
        if account == "me":
            return await self._messenger(r, raw, r.headers["Authorization"].removeprefix("Bearer "))
        doc = orjson.loads(raw)
        to = str(doc.get("to", ""))
        text = _wa_text(doc)
        if bad := await self._faulted("whatsapp", account, to, text, raw):
            return bad
        n = self._deliver("whatsapp", account, to, text, raw)
        self._receipt("whatsapp", account, to, f"wamid.EMU{int(n):012d}")
        return web.json_response({"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}],
                                  "messages": [{"id": f"wamid.EMU{int(n):012d}"}]})

    async def _messenger(self, r: web.Request, raw: bytes, token: str) -> web.Response:
        """Messenger and Instagram share ``/me/messages``: booked by page token (an Instagram
        account's token starting with ``IG`` books it under instagram)."""
        doc = orjson.loads(raw)
        to = str(doc.get("recipient", {}).get("id", ""))
        provider = "instagram" if token.startswith("IG") else "messenger"
        msg = doc.get("message", {})
        text = msg.get("text") or str(msg.get("attachment", {}).get("payload", {}).get("text", ""))
        if bad := await self._faulted(provider, token, to, text, raw):
            return bad
        n = self._deliver(provider, token, to, text, raw)
        return web.json_response({"recipient_id": to, "message_id": f"m_EMU{int(n):012d}"})

    # --- Twilio ----------------------------------------------------------------------------------

    async def twilio(self, r: web.Request) -> web.Response:
        raw, sid = await r.read(), r.match_info["sid"]
        if not r.headers.get("Authorization", "").startswith("Basic "):
            return web.json_response({"code": 20003, "message": "Authenticate", "status": 401}, status=401)
        form = dict(parse_qsl(raw.decode()))
        to, text = form.get("To", ""), form.get("Body", "") or form.get("ContentSid", "") or form.get("MediaUrl", "")
        if bad := await self._faulted("twilio", sid, to, text, raw):
            return bad
        n = self._deliver("twilio", sid, to, text, raw)
        msid = f"SM{int(n):032x}"
        self._receipt("twilio", sid, to, msid, form.get("From"))
        return web.json_response({"sid": msid, "account_sid": sid, "to": to, "from": form.get("From"),
                                  "messaging_service_sid": form.get("MessagingServiceSid"),
                                  "body": form.get("Body", ""), "status": "queued", "num_segments": "1",
                                  "num_media": "0", "direction": "outbound-api",
                                  "api_version": "2010-04-01", "price": None, "price_unit": "USD", "error_code": None,
                                  "error_message": None, "date_created": "Mon, 30 Nov 2026 10:00:00 +0000",
                                  "date_updated": "Mon, 30 Nov 2026 10:00:00 +0000", "date_sent": None,
                                  "uri": f"/2010-04-01/Accounts/{sid}/Messages/{msid}.json", "subresource_uris": {}},
                                 status=201)

    # --- Telegram ----------------------------------------------------------------------------------

    async def telegram(self, r: web.Request) -> web.Response:
        raw, token, method = await r.read(), r.match_info["token"], r.match_info["method"]
        doc = await _telegram_params(r, raw)
        chat = str(doc.get("chat_id", ""))
        text = str(doc.get("text") or doc.get("caption") or doc.get("photo") or doc.get("latitude") or "")
        if method in ("getMe",):
            return web.json_response({"ok": True, "result": {"id": int(token.split(":")[0] or 1), "is_bot": True,
                                                             "first_name": "Emulated", "username": "emulated_bot"}})
        if bad := await self._faulted("telegram", token, chat, text, raw):
            return bad
        n = self._deliver("telegram", token, chat, text, raw)
        result: dict[str, Any] = {"message_id": int(n), "date": int(time.time()),
                                  "chat": {"id": int(chat) if chat.lstrip("-").isdigit() else 0, "type": "private"}}
        if "text" in doc:
            result["text"] = doc["text"]
        return web.json_response({"ok": True, "result": result})

    # --- LINE --------------------------------------------------------------------------------------

    async def line(self, r: web.Request) -> web.Response:
        raw = await r.read()
        token = r.headers.get("Authorization", "").removeprefix("Bearer ")
        doc = orjson.loads(raw)
        key, to = r.headers.get("X-Line-Retry-Key"), str(doc.get("to", ""))
        text = " ".join(str(m.get("text") or m.get("altText") or m.get("type")) for m in doc.get("messages", []))
        if (ids := self._replayed("line", token, key)) is not None:
            return web.json_response({"message": "The retry key is already accepted",
                                      "sentMessages": [{"id": i, "quoteToken": f"q{i}"} for i in ids]},
                                     status=409, headers={"x-line-accepted-request-id": f"req-{key}"})
        if bad := await self._faulted("line", token, to, text, raw):
            return bad
        ids = [self._deliver("line", token, to, text, raw, key),
               *(str(next(self.book.seq)) for _ in doc["messages"][1:])]
        if key:
            self.book.keys[key] = ids
        return web.json_response({"sentMessages": [{"id": i, "quoteToken": f"q{i}"} for i in ids]},
                                 headers={"x-line-request-id": f"req-{ids[0]}"})

    # --- Viber -------------------------------------------------------------------------------------

    async def viber(self, r: web.Request) -> web.Response:
        raw = await r.read()
        doc = orjson.loads(raw)
        token = r.headers.get("X-Viber-Auth-Token") or str(doc.get("auth_token") or "")  # older clients: in the body
        if not token:
            return web.json_response({"status": 2, "status_message": "invalidAuthToken"})
        to, text = str(doc.get("receiver", "")), str(doc.get("text") or doc.get("media") or "")
        if bad := await self._faulted("viber", token, to, text, raw):
            return bad
        n = self._deliver("viber", token, to, text, raw)
        self._receipt("viber", token, to, str(5741311803571721087 + int(n)))
        return web.json_response({"status": 0, "status_message": "ok", "message_token": 5741311803571721087 + int(n),
                                  "chat_hostname": "SN-CHAT-EMU_"})

    # --- WeChat ------------------------------------------------------------------------------------

    async def wechat_token(self, r: web.Request) -> web.Response:
        appid = r.query.get("appid", "")
        if not appid or not r.query.get("secret"):
            return web.json_response({"errcode": 40013, "errmsg": "invalid appid"})
        token = f"EMU_{appid}_{next(self.book.seq)}"
        self.tokens.add(token)
        self.book.counts[("wechat", appid)]["tokens"] += 1
        return web.json_response({"access_token": token, "expires_in": 7200})

    async def wechat_send(self, r: web.Request) -> web.Response:
        raw, token = await r.read(), r.query.get("access_token", "")
        if token not in self.tokens:
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential, access_token is invalid"})
        appid = token.split("_")[1] if token.count("_") >= 2 else token
        doc = orjson.loads(raw)
        to = str(doc.get("touser", ""))
        text = str((doc.get("text") or {}).get("content") or doc.get("template_id") or "")
        if bad := await self._faulted("wechat", appid, to, text, raw):
            return bad
        n = self._deliver("wechat", appid, to, text, raw)
        out: dict[str, Any] = {"errcode": 0, "errmsg": "ok"}
        if r.match_info["kind"] == "template":
            out["msgid"] = 200228332 + int(n)
        return web.json_response(out)

    # --- RBM ---------------------------------------------------------------------------------------

    async def rbm(self, r: web.Request) -> web.Response:
        raw, phone = await r.read(), r.match_info["phone"]
        if not r.headers.get("Authorization", "").startswith("Bearer "):
            return web.json_response({"error": {"code": 401, "message": "no token", "status": "UNAUTHENTICATED"}},
                                     status=401)
        key, agent = r.query.get("messageId"), r.query.get("agentId", "agent")
        doc = orjson.loads(raw)
        text = str(doc.get("contentMessage", {}).get("text", ""))
        if self._replayed("rbm", agent, key) is not None:
            return web.json_response({"error": {"code": 409, "message": f"Message {key} already exists",
                                                "status": "ALREADY_EXISTS"}}, status=409)
        if bad := await self._faulted("rbm", agent, phone, text, raw):
            return bad
        self._deliver("rbm", agent, phone, text, raw, key)
        if key:
            self.book.keys[key] = [key]
            self._receipt("rbm", agent, phone, key)
        return web.json_response({"name": f"phones/{phone}/agentMessages/{key}", "sendTime": _now_iso(), **doc})

    async def oauth_token(self, r: web.Request) -> web.Response:
        form = await r.post()
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" or not form.get("assertion"):
            return web.json_response({"error": "invalid_grant"}, status=400)
        return web.json_response({"access_token": f"ya29.EMU{next(self.book.seq)}", "expires_in": 3599,
                                  "token_type": "Bearer"})

    # --- admin -------------------------------------------------------------------------------------

    async def counts(self, r: web.Request) -> web.Response:
        out: dict[str, dict[str, dict[str, int]]] = defaultdict(dict)
        for (provider, account), c in self.book.counts.items():
            out[provider][account] = dict(c)
        return web.json_response(out)

    async def messages(self, r: web.Request) -> web.Response:
        provider = r.query.get("provider")
        since = int(r.query.get("since", 0))
        rows = [m for m in self.book.messages[since:] if not provider or m["provider"] == provider]
        return web.Response(body=orjson.dumps(rows), content_type="application/json")

    async def faults(self, r: web.Request) -> web.Response:
        if r.method == "DELETE":
            self.book.faults.clear()
            return web.json_response({"faults": 0})
        doc = await r.json()
        for f in doc if isinstance(doc, list) else [doc]:
            self.book.faults.append(Fault(**f))
        return web.json_response({"faults": len(self.book.faults)})

    async def reset(self, r: web.Request) -> web.Response:
        self.book = Book()
        return web.json_response({"reset": True})

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        add = app.router.add_route
        add("POST", "/{version}/{account}/messages", self.whatsapp)
        add("POST", "/2010-04-01/Accounts/{sid}/Messages.json", self.twilio)
        add("POST", "/bot{token}/{method}", self.telegram)
        add("GET", "/bot{token}/{method}", self.telegram)
        add("POST", "/v2/bot/message/push", self.line)
        add("POST", "/pa/send_message", self.viber)
        add("POST", "/pa/post", self.viber)
        add("GET", "/cgi-bin/token", self.wechat_token)
        add("POST", "/cgi-bin/message/{kind}/send", self.wechat_send)
        add("POST", "/v1/phones/{phone}/agentMessages", self.rbm)
        add("POST", "/token", self.oauth_token)
        add("GET", "/_emulator/counts", self.counts)
        add("GET", "/_emulator/messages", self.messages)
        add("POST", "/_emulator/faults", self.faults)
        add("DELETE", "/_emulator/faults", self.faults)
        add("POST", "/_emulator/reset", self.reset)
        return app


def _wa_text(doc: dict[str, Any]) -> str:
    t = doc.get("type")
    if t == "text":
        return doc["text"]["body"]
    if t == "interactive":
        return doc["interactive"]["body"]["text"]
    if t == "template":
        return doc["template"]["name"]
    part = doc.get(t, {}) if isinstance(t, str) else {}
    return str(part.get("link") or part.get("caption") or t)


async def _telegram_params(r: web.Request, raw: bytes) -> dict[str, Any]:
    ctype = r.headers.get("Content-Type", "")
    if ctype.startswith("application/json"):
        return orjson.loads(raw) if raw else {}
    if ctype.startswith("multipart/"):
        return {k: v for k, v in (await r.post()).items() if isinstance(v, str)}
    return dict(parse_qsl(raw.decode())) if raw else dict(r.query)


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())


def _meta_error(f: Fault) -> web.Response:
    if f.kind == "rate_limit":
        return web.json_response({"error": {"message": "(#130429) Rate limit hit", "type": "OAuthException",
                                            "code": 130429, "fbtrace_id": "EMU"}}, status=429,
                                 headers={"Retry-After": f"{f.retry_after:g}"})
    code = f.code or (131000 if f.status >= 500 else 100)
    return web.json_response({"error": {"message": f"(#{code}) emulated error", "type": "OAuthException",
                                        "code": int(code), "fbtrace_id": "EMU"}},
                             status=f.status if f.kind == "status" else 400)


def _twilio_error(f: Fault) -> web.Response:
    if f.kind == "rate_limit":
        return web.json_response({"code": 20429, "message": "Too Many Requests", "status": 429},
                                 status=429, headers={"Retry-After": f"{f.retry_after:g}"})
    return web.json_response({"code": int(f.code or 20500), "message": "emulated error", "status": f.status},
                             status=f.status if f.kind == "status" else 400)


def _telegram_error(f: Fault) -> web.Response:
    if f.kind == "rate_limit":
        return web.json_response({"ok": False, "error_code": 429,
                                  "description": f"Too Many Requests: retry after {int(f.retry_after)}",
                                  "parameters": {"retry_after": f.retry_after}}, status=429)
    status = f.status if f.kind == "status" else int(f.code or 400)
    return web.json_response({"ok": False, "error_code": status, "description": "emulated error"}, status=status)


def _line_error(f: Fault) -> web.Response:
    if f.kind == "rate_limit":
        return web.json_response({"message": "The API rate limit has been exceeded. Try again later."}, status=429,
                                 headers={"Retry-After": f"{f.retry_after:g}"})
    return web.json_response({"message": f"emulated error {f.code or ''}".strip()},
                             status=f.status if f.kind == "status" else 400)


def _viber_error(f: Fault) -> web.Response:
    if f.kind == "rate_limit":
        return web.json_response({"status": 12, "status_message": "tooManyRequests"})
    if f.kind == "status":
        return web.json_response({"message": "emulated"}, status=f.status)
    return web.json_response({"status": int(f.code or 6), "status_message": "emulated"})


def _wechat_error(f: Fault) -> web.Response:
    if f.kind == "rate_limit":
        return web.json_response({"errcode": 45009, "errmsg": "reach max api daily quota limit"})
    if f.kind == "status":
        return web.json_response({"errcode": -1, "errmsg": "system error"}, status=f.status)
    return web.json_response({"errcode": int(f.code or 45015), "errmsg": "emulated"})


def _rbm_error(f: Fault) -> web.Response:
    if f.kind == "rate_limit":
        return web.json_response({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}},
                                 status=429, headers={"Retry-After": f"{f.retry_after:g}"})
    status = f.status if f.kind == "status" else int(f.code or 404)
    name = {404: "NOT_FOUND", 400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED"}.get(status, "INTERNAL")
    return web.json_response({"error": {"code": status, "message": "emulated", "status": name}}, status=status)


ERRORS = {"whatsapp": _meta_error, "messenger": _meta_error, "instagram": _meta_error, "twilio": _twilio_error,
          "telegram": _telegram_error, "line": _line_error, "viber": _viber_error, "wechat": _wechat_error,
          "rbm": _rbm_error}


async def serve(host: str, port: int, smtp_port: int | None, stop: asyncio.Event, *,
                receipts_to: str | None = None, accounts_file: str | None = None) -> Emulator:
    from parley.app.emulator.smtp import SmtpServer

    receipts = None
    if receipts_to and accounts_file:
        from adapters.accounts import load
        from parley.app.emulator.receipts import Receipts

        receipts = Receipts(receipts_to, load(accounts_file))
    emu = Emulator(receipts=receipts)
    runner = web.AppRunner(emu.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    smtp = await asyncio.start_server(SmtpServer(emu).handle, host, smtp_port) if smtp_port else None
    try:
        await stop.wait()
    finally:
        if smtp:
            smtp.close()
        if receipts is not None:
            await receipts.close()
        await runner.cleanup()
    return emu


def run(host: str = "127.0.0.1", port: int = 8900, smtp_port: int | None = 8925, *,
        receipts_to: str | None = None, accounts_file: str | None = None) -> None:
    import signal

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"provider emulators on http://{host}:{port} (SMTP {host}:{smtp_port})", flush=True)
        await serve(host, port, smtp_port, stop, receipts_to=receipts_to, accounts_file=accounts_file)

    asyncio.run(main())


if __name__ == "__main__":
    run()
