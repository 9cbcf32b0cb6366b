"""The web chat push hub: the browser widget's WebSocket or SSE connection to the egress.

``GET /webchat/{account}/{user}/ws`` (WebSocket) or ``/webchat/{account}/{user}/events``
(Server-Sent Events, ``Last-Event-ID`` honoured). Authentication: ``?token=`` or a bearer
token, ``hex(HMAC-SHA256(options.send.push_key, "<account>|<user>"))``, issued to the widget by
the business's backend (an account without ``push_key`` is open: the demo). A push goes to every
open connection of that user and is kept (the last ``keep`` per user, in memory) so a widget
that reconnects gets what it missed. The message's id is our event id. Kept messages are lost if
the egress restarts (the widget then reads the thread's history from the API).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections import deque
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from egress.providers.base import Result, permanent, sent


class Hub:
    def __init__(self, keep: int = 100, accounts: Any = None) -> None:
        self.keep, self.accounts = keep, accounts
        self.kept: dict[tuple[str, str], deque[dict[str, Any]]] = {}
        self.live: dict[tuple[str, str], set[asyncio.Queue]] = {}
        self.pushed = 0

    async def push(self, body: dict[str, Any]) -> Result:
        k = (body["account"], body["user"])
        if not body.get("parts"):
            return permanent("empty_message", "nothing to push")
        box = self.kept.setdefault(k, deque(maxlen=self.keep))
        box.append(body)
        for q in self.live.get(k, ()):
            q.put_nowait(body)
        self.pushed += 1
        return sent([body["id"]])

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/webchat/{account}/{user}/ws", self.ws)
        app.router.add_get("/webchat/{account}/{user}/events", self.sse)
        app.router.add_get("/healthz", _healthy)

    def _authorized(self, request: web.Request) -> tuple[str, str]:
        account, user = request.match_info["account"], request.match_info["user"]
        acc = self.accounts.find("webchat", account) if self.accounts else None
        key = (acc.send.get("push_key") if acc else None) or ""
        if key:
            given = request.query.get("token") or request.headers.get("Authorization", "").removeprefix("Bearer ")
            want = hmac.new(key.encode(), f"{account}|{user}".encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(given.encode(), want.encode()):
                raise web.HTTPUnauthorized(text="bad web chat token")
        return account, user

    def _attach(self, k: tuple[str, str], after: str | None) -> tuple[asyncio.Queue, list[dict[str, Any]]]:
        q: asyncio.Queue = asyncio.Queue()
        self.live.setdefault(k, set()).add(q)
        kept = list(self.kept.get(k, ()))
        if after:
            ids = [m["id"] for m in kept]
            kept = kept[ids.index(after) + 1:] if after in ids else kept
        return q, kept

    def _detach(self, k: tuple[str, str], q: asyncio.Queue) -> None:
        self.live.get(k, set()).discard(q)

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        k = self._authorized(request)
        ws = web.WebSocketResponse(heartbeat=30)
        await ws.prepare(request)
        q, backlog = self._attach(k, request.query.get("after"))
        try:
            for m in backlog:
                await ws.send_bytes(orjson.dumps(m))
            reader = asyncio.ensure_future(ws.receive())
            while not ws.closed:
                getter = asyncio.ensure_future(q.get())
                done, _ = await asyncio.wait({reader, getter}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    await ws.send_bytes(orjson.dumps(getter.result()))
                else:
                    getter.cancel()
                if reader in done:
                    if reader.result().type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR):
                        break
                    reader = asyncio.ensure_future(ws.receive())
        finally:
            self._detach(k, q)
        return ws

    async def sse(self, request: web.Request) -> web.StreamResponse:
        k = self._authorized(request)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        q, backlog = self._attach(k, request.headers.get("Last-Event-ID"))
        try:
            for m in backlog:
                await resp.write(_event(m))
            while True:
                await resp.write(_event(await q.get()))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._detach(k, q)
        return resp


async def _healthy(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def _event(m: dict[str, Any]) -> bytes:
    return b"id: " + m["id"].encode() + b"\nevent: message\ndata: " + orjson.dumps(m) + b"\n\n"
