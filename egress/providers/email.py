"""E-mail over SMTP (pure part: the message to send, and SMTP replies classified).

One e-mail per outbound message, every part in its plain-text body (the render step degraded
options, cards and media to numbered lines and links). ``Message-ID`` is derived from our event
id (``<event id>@<domain>``): a resend after a crash carries the same id, which receiving
systems use to thread and to drop duplicates. SMTP replies: 4xx (421, 450, 451, 452) are
temporary and retried, 5xx permanent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from egress.model import Plan, SendAccount
from egress.providers.base import Call, Result, permanent, sent, transient


def requests(account: SendAccount, plan: Plan, event: dict[str, Any]) -> list[Call]:
    sender = account.send.get("from") or account.account_id.lstrip("@")
    domain = sender.rsplit("@", 1)[-1] if "@" in sender else "parley.invalid"
    text = "\n\n".join(p.get("text") or (p.get("template") or {}).get("body") or "" for p in plan.parts)
    subject = plan.subject or account.send.get("subject") or "Re: your message"
    return [Call(kind="smtp", key=f"<{event['envelope']['event_id']}@{domain}>", parts=len(plan.parts), body={
        "from": sender, "to": plan.recipient, "subject": subject, "text": text,
        "message_id": f"<{event['envelope']['event_id']}@{domain}>"})]


def classify_smtp(code: int | None, message: str, call: Call) -> Result:
    """An SMTP reply code (None: the connection failed) as a result."""
    if code is None:
        return transient("smtp_connect", f"SMTP: {message}")
    if 200 <= code < 400:
        return sent([call.body["message_id"]], code)
    if 400 <= code < 500:
        return transient(str(code), f"SMTP {code}: {message}", code, 5.0 if code == 421 else None)
    return permanent(str(code), f"SMTP {code}: {message}", code)


def classify(status: int, headers: Mapping[str, str], body: bytes, call: Call | None = None) -> Result:
    raise NotImplementedError("e-mail is sent over SMTP: classify_smtp")
