"""WeChat Official Account: customer-service messages and template messages (pure).

``POST /cgi-bin/message/custom/send?access_token=...`` (``touser``, ``msgtype`` text/image,
``text.content``) inside the 48-hour window; outside it, a template message
``POST /cgi-bin/message/template/send`` (``template_id``, ``data``: the parameters as
``keyword1..n`` unless the template names them). The access token comes from
``GET /cgi-bin/token`` (valid 2 h; the runner holds one per account). Answers: ``errcode`` 0
(template sends add ``msgid``; custom sends give no id, so our message id stands for it);
40001/40014/42001 the token (refreshed, retried), -1 busy and 45009 the daily limit (retried
later), 45015/45047 the window, 43004 not subscribed. JSON is sent as UTF-8, never ``\\u`` escapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from egress.model import Plan, SendAccount
from egress.providers.base import Call, Result, http_default, parse_json, permanent, sent, transient

TOKEN_CODES = {40001, 40014, 42001}
WINDOW_CODES = {45015, 45047}


def requests(account: SendAccount, plan: Plan, event: dict[str, Any]) -> list[Call]:
    return [_call(account, plan, p, event) for p in plan.parts]


def _call(account: SendAccount, plan: Plan, part: dict[str, Any], event: dict[str, Any]) -> Call:
    if part["type"] == "template":
        tp = part["template"]
        names = list(account.send.get("template_keywords", {}).get(tp["name"], []))
        data = {(names[i] if i < len(names) else f"keyword{i + 1}"): {"value": p}
                for i, p in enumerate(tp["parameters"])}
        return Call(url="/cgi-bin/message/template/send?access_token={token}", token="wechat",
                    json={"touser": plan.recipient, "template_id": tp.get("provider_id") or tp["name"], "data": data},
                    body=event.get("message_id"))
    if part["type"] == "media":
        return Call(url="/cgi-bin/message/custom/send?access_token={token}", token="wechat",
                    json={"touser": plan.recipient, "msgtype": "image",
                          "image": {"media_id": part["media"]["media_id"]}},
                    body=event.get("message_id"))
    return Call(url="/cgi-bin/message/custom/send?access_token={token}", token="wechat",
                json={"touser": plan.recipient, "msgtype": "text", "text": {"content": part["text"]}},
                body=event.get("message_id"))


def token_request(account: SendAccount) -> str:
    s = account.send
    return f"/cgi-bin/token?grant_type=client_credential&appid={s.get('app_id', '')}&secret={s.get('app_secret', '')}"


def classify(status: int, headers: Mapping[str, str], body: bytes, call: Call | None = None) -> Result:
    doc = parse_json(body)
    if not isinstance(doc, dict) or "errcode" not in doc:
        return http_default(status, headers, "WeChat")
    code = doc["errcode"]
    if code == 0:
        return sent([str(doc.get("msgid") or (call.body if call else "") or "")], status)
    reason = f"WeChat errcode {code}: {doc.get('errmsg', '')}"
    if code in TOKEN_CODES:
        return transient(str(code), reason, status, 0.0, token_expired=True)
    if code == -1:
        return transient(str(code), reason, status)
    if code in (45009, 45011):
        return transient(str(code), reason + " (API limit)", status, 60.0)
    if code in WINDOW_CODES:
        return permanent(str(code), reason + " (outside the 48-hour customer-service window: send a template)", status)
    return permanent(str(code), reason, status)
