"""Delivery receipts from the provider emulators: what real providers post back to the webhook.

When the emulator is given the ingress's URL and the accounts file (``parley egress emulator
--receipts-to http://127.0.0.1:8080 --accounts config/accounts.example.toml``), each message it
accepts is followed by the provider's status webhooks, signed as the provider signs them, posted
to ``/webhooks/<adapter>/<account>``: WhatsApp ``statuses`` (sent, delivered, read or failed;
X-Hub-Signature-256), Twilio status callbacks (sent, delivered; X-Twilio-Signature), Viber
``delivered``/``seen`` (X-Viber-Content-Signature), RBM ``DELIVERED``/``READ`` user events
(X-Goog-Signature). The ingress parses them into DeliveryStatusChanged on ``parley.messages``,
and the threads projection ties them to the outbound message by the provider's id. Telegram,
LINE, WeChat, Messenger watermarks, e-mail and web chat send none here.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import random
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import orjson

from adapters.accounts import Accounts


@dataclass(frozen=True)
class Route:
    adapter: str
    account_id: str
    secret: str


class Receipts:
    """Posts the status webhooks of accepted messages to the ingress, in the background."""

    def __init__(self, ingress_url: str, accounts: Accounts, *, read_ratio: float = 0.7,
                 failed_ratio: float = 0.0, delay_s: float = 0.2, seed: int = 3) -> None:
        self.url, self.accounts = ingress_url.rstrip("/"), accounts
        self.read_ratio, self.failed_ratio, self.delay_s = read_ratio, failed_ratio, delay_s
        self.rng = random.Random(seed)
        self.posted: dict[int, int] = {}  # HTTP status -> count
        self._tasks: set[asyncio.Task] = set()
        self._session: aiohttp.ClientSession | None = None

    def after(self, provider: str, account: str, to: str, provider_id: str, sender: str | None = None) -> None:
        """Schedule the receipts of a message the emulator accepted (no-op for other providers)."""
        route = self.route(provider, account, sender)
        if route is None:
            return
        task = asyncio.get_running_loop().create_task(self._send(route, provider, to, provider_id, sender))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def route(self, provider: str, account: str, sender: str | None) -> Route | None:
        for a in self.accounts:
            by_id = provider in ("whatsapp", "rbm") and a.account_id == account
            by_sender = provider == "twilio" and sender and a.matches(sender.removeprefix("whatsapp:"))
            by_token = provider == "viber" and (account in a.secrets
                                                or account == (a.options.get("send") or {}).get("auth_token"))
            if a.channel == provider and (by_id or by_sender or by_token):
                if a.secrets:
                    return Route(a.channel, a.account_id, a.secrets[0])
        return None

    async def _send(self, route: Route, provider: str, to: str, pid: str, sender: str | None) -> None:
        statuses = ["sent", "delivered"]
        if self.rng.random() < self.failed_ratio:
            statuses = ["failed"]
        elif self.rng.random() < self.read_ratio:
            statuses.append("read")
        for status in statuses:
            await asyncio.sleep(self.delay_s * (1 + self.rng.random()))
            body, headers, url = SIGNERS[provider](self, route, to, pid, status, sender)
            if body is None:
                continue
            try:
                if self._session is None:
                    self._session = aiohttp.ClientSession()
                async with self._session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    self.posted[resp.status] = self.posted.get(resp.status, 0) + 1
            except aiohttp.ClientError:
                self.posted[0] = self.posted.get(0, 0) + 1

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        if self._session is not None:
            await self._session.close()

    # --- each provider's webhook ---------------------------------------------------------------

    def _whatsapp(self, r: Route, to: str, pid: str, status: str, _: Any) -> tuple[bytes, dict, str]:
        st: dict[str, Any] = {"id": pid, "status": status, "timestamp": str(int(time.time())), "recipient_id": to}
        if status == "failed":
            st["errors"] = [{"code": 131026, "title": "Message undeliverable",
                             "error_data": {"details": "emulated: the customer's phone is unreachable"}}]
        body = orjson.dumps({"object": "whatsapp_business_account", "entry": [{"id": "WABA-EMU", "changes": [{
            "field": "messages", "value": {"messaging_product": "whatsapp",
                                           "metadata": {"display_phone_number": "emu", "phone_number_id": r.account_id},
                                           "statuses": [st]}}]}]})
        sig = "sha256=" + hmac.new(r.secret.encode(), body, hashlib.sha256).hexdigest()
        return body, {"X-Hub-Signature-256": sig, "Content-Type": "application/json"}, self._url(r)

    def _twilio(self, r: Route, to: str, pid: str, status: str, sender: str | None) -> tuple[bytes | None, dict, str]:
        if status == "read" and not to.startswith("whatsapp:"):
            return None, {}, ""
        params = {"MessageSid": pid, "SmsSid": pid, "MessageStatus": "undelivered" if status == "failed" else status,
                  "To": to, "From": sender or r.account_id, "AccountSid": "ACemulator", "ApiVersion": "2010-04-01"}
        if status == "failed":
            params.update(ErrorCode="30003", ErrorMessage="Unreachable destination handset")
        url = self._url(r)
        signed = url + "".join(k + params[k] for k in sorted(params))
        sig = base64.b64encode(hmac.new(r.secret.encode(), signed.encode(), hashlib.sha1).digest()).decode()
        return urlencode(params).encode(), {"X-Twilio-Signature": sig,
                                            "Content-Type": "application/x-www-form-urlencoded"}, url

    def _viber(self, r: Route, to: str, pid: str, status: str, _: Any) -> tuple[bytes | None, dict, str]:
        event = {"sent": None, "delivered": "delivered", "read": "seen", "failed": "failed"}[status]
        if event is None:
            return None, {}, ""
        doc: dict[str, Any] = {"event": event, "timestamp": int(time.time() * 1000), "message_token": int(pid),
                               "user_id": to}
        if event == "failed":
            doc["desc"] = "emulated failure"
        body = orjson.dumps(doc)
        sig = hmac.new(r.secret.encode(), body, hashlib.sha256).hexdigest()
        return body, {"X-Viber-Content-Signature": sig, "Content-Type": "application/json"}, self._url(r)

    def _rbm(self, r: Route, to: str, pid: str, status: str, _: Any) -> tuple[bytes | None, dict, str]:
        event = {"delivered": "DELIVERED", "read": "READ"}.get(status)
        if event is None:
            return None, {}, ""
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        inner = orjson.dumps({"senderPhoneNumber": to if to.startswith("+") else f"+{to}", "eventType": event,
                              "eventId": f"ev-{pid}-{event}", "messageId": pid, "sendTime": now,
                              "agentId": r.account_id})
        body = orjson.dumps({"message": {"data": base64.b64encode(inner).decode(), "messageId": f"ps-{pid}-{event}",
                                         "publishTime": now}, "subscription": "projects/emu/subscriptions/rbm"})
        sig = base64.b64encode(hmac.new(r.secret.encode(), inner, hashlib.sha512).digest()).decode()
        return body, {"X-Goog-Signature": sig, "Content-Type": "application/json"}, self._url(r)

    def _url(self, r: Route) -> str:
        return f"{self.url}/webhooks/{r.adapter}/{quote(r.account_id, safe='@')}"


SIGNERS = {"whatsapp": Receipts._whatsapp, "twilio": Receipts._twilio, "viber": Receipts._viber, "rbm": Receipts._rbm}
