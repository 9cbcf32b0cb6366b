"""Making the calls: HTTP (aiohttp), SMTP (aiosmtplib) and the web chat push; access tokens.

One ``Sender`` per process: one HTTP connection pool for every provider, a base URL per provider
(the real API, an account's ``send.base_url``, or the emulator), and the access tokens WeChat
(``/cgi-bin/token``, 2 h) and RBM (OAuth2) need, one holder per account, refreshed when the
provider says the token expired. Timeouts and connection errors are transient results.
"""

from __future__ import annotations

import asyncio
import time
from email.message import EmailMessage
from typing import Any

import aiohttp
import orjson

from egress.model import SendAccount
from egress.providers import PROVIDERS, email, wechat
from egress.providers.base import Call, Result, transient

BASE_URLS = {"whatsapp": "https://graph.facebook.com", "messenger": "https://graph.facebook.com",
             "instagram": "https://graph.facebook.com", "twilio": "https://api.twilio.com",
             "telegram": "https://api.telegram.org", "line": "https://api.line.me",
             "viber": "https://chatapi.viber.com", "wechat": "https://api.weixin.qq.com",
             "rbm": "https://rcsbusinessmessaging.googleapis.com"}
JSON = {"Content-Type": "application/json; charset=utf-8"}


class Sender:
    def __init__(self, *, emulator_url: str | None = None, emulator_smtp: str | None = None, timeout_s: float = 10.0,
                 connections: int = 256, hub: Any = None) -> None:
        self.emulator_url, self.emulator_smtp = emulator_url, emulator_smtp
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.connections, self.hub = connections, hub
        self.session: aiohttp.ClientSession | None = None
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.connections, limit_per_host=0, ttl_dns_cache=300),
            timeout=self.timeout, skip_auto_headers=("User-Agent",))

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    def base_url(self, account: SendAccount) -> str:
        return (self.emulator_url or account.send.get("base_url") or BASE_URLS.get(account.provider, "")).rstrip("/")

    async def call(self, account: SendAccount, call: Call) -> Result:
        try:
            if call.kind == "smtp":
                return await self._smtp(account, call)
            if call.kind == "push":
                return await self.hub.push(call.body)
            result = await self._http(account, call)
            if result.token_expired:
                self._tokens.pop((account.provider, account.account_id), None)
            return result
        except TimeoutError:
            return transient("timeout", f"{account.provider}: no answer within {self.timeout.total} s")
        except aiohttp.ClientError as e:
            return transient("connection", f"{account.provider}: {type(e).__name__}: {e}")

    async def _http(self, account: SendAccount, call: Call) -> Result:
        assert self.session is not None
        url, headers = self.base_url(account) + call.url, dict(call.headers)
        if call.token:
            token = await self.token(account)
            if "{token}" in url:
                url = url.replace("{token}", token)
            else:
                headers["Authorization"] = f"Bearer {token}"
        kw: dict[str, Any] = {}
        if call.json is not None:
            kw["data"], headers = orjson.dumps(call.json), {**JSON, **headers}
        elif call.form is not None:
            kw["data"] = list(call.form)
        async with self.session.request(call.method, url, headers=headers, **kw) as resp:
            body = await resp.read()
            return PROVIDERS[account.provider].classify(resp.status, resp.headers, body, call)

    # --- tokens --------------------------------------------------------------------------------

    async def token(self, account: SendAccount) -> str:
        if account.send.get("access_token"):
            return str(account.send["access_token"])
        k = (account.provider, account.account_id)
        held = self._tokens.get(k)
        if held and held[1] > time.monotonic():
            return held[0]
        async with self._locks.setdefault(k, asyncio.Lock()):
            held = self._tokens.get(k)
            if held and held[1] > time.monotonic():
                return held[0]
            fetch = self._wechat_token if account.provider == "wechat" else self._rbm_token
            token, ttl = await fetch(account)
            self._tokens[k] = (token, time.monotonic() + ttl * 0.9)
            return token

    async def _wechat_token(self, account: SendAccount) -> tuple[str, float]:
        assert self.session is not None
        async with self.session.get(self.base_url(account) + wechat.token_request(account)) as resp:
            doc = orjson.loads(await resp.read())
        if "access_token" not in doc:
            raise aiohttp.ClientError(f"WeChat token: {doc}")
        return doc["access_token"], float(doc.get("expires_in", 7200))

    async def _rbm_token(self, account: SendAccount) -> tuple[str, float]:
        """OAuth2 for a service account: a JWT assertion signed with its key (``parley[rbm]``)."""
        import json

        import jwt  # pyjwt[crypto]

        sa = json.loads(open(account.send["service_account_file"]).read())
        uri = sa.get("token_uri", "https://oauth2.googleapis.com/token")
        if self.emulator_url:
            uri = self.emulator_url.rstrip("/") + "/token"
        now = int(time.time())
        assertion = jwt.encode({"iss": sa["client_email"], "aud": uri, "iat": now, "exp": now + 3600,
                                "scope": "https://www.googleapis.com/auth/rcsbusinessmessaging"},
                               sa["private_key"], algorithm="RS256")
        assert self.session is not None
        async with self.session.post(uri, data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                                                "assertion": assertion}) as resp:
            doc = orjson.loads(await resp.read())
        if "access_token" not in doc:
            raise aiohttp.ClientError(f"RBM token: {doc}")
        return doc["access_token"], float(doc.get("expires_in", 3600))

    # --- e-mail --------------------------------------------------------------------------------

    async def _smtp(self, account: SendAccount, call: Call) -> Result:
        import aiosmtplib

        b, s = call.body, account.send
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"], msg["Message-ID"] = b["from"], b["to"], b["subject"], b["message_id"]
        msg.set_content(b["text"])
        host, port = s.get("smtp_host", "localhost"), int(s.get("smtp_port", 587))
        if self.emulator_smtp:
            host, _, p = self.emulator_smtp.partition(":")
            port = int(p or 25)
        try:
            await aiosmtplib.send(msg, hostname=host, port=port, username=s.get("username"), password=s.get("password"),
                                  start_tls=bool(s.get("starttls", False)) and not self.emulator_smtp,
                                  timeout=self.timeout.total)
        except aiosmtplib.SMTPResponseException as e:
            return email.classify_smtp(e.code, e.message, call)
        except (aiosmtplib.SMTPException, OSError) as e:
            return email.classify_smtp(None, f"{type(e).__name__}: {e}", call)
        return email.classify_smtp(250, "ok", call)
