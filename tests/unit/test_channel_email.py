"""Inbound e-mail (SendGrid Inbound Parse) adapter; bodies encoded by urllib3's multipart encoder,
fields as in SendGrid's Inbound Parse documentation."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace
from email.message import EmailMessage

import pytest
from urllib3.filepost import encode_multipart_formdata

from adapters.base import Rejected, Unmappable
from adapters.channels.email import ADAPTER

try:
    from channel_support import NEW, OLD, RAW_ID, RECEIVED_AT, account, check_envelope, request, roundtrip
except ImportError:  # tests/unit collected as a package
    from .channel_support import NEW, OLD, RAW_ID, RECEIVED_AT, account, check_envelope, request, roundtrip

ACCOUNT = account("email", "support@parse.acme.example")
MSG_ID = "<CAF=k2Yx8Lw9Qz@mail.example.com>"
HEADERS = (
    "Received: by mx0047p1mdw1.sendgrid.net with SMTP id 6WCVv7KAWn\n"
    "From: Jane Doe <Jane.Doe@example.com>\n"
    "To: support@parse.acme.example\n"
    "Subject: Re: Order #42 arrived damaged\n"
    f"Message-ID: {MSG_ID}\n"
    "In-Reply-To: <reply-1@acme.example>\n"
    "References: <first@acme.example> <reply-1@acme.example>\n"
    "Date: Tue, 12 Nov 2024 08:20:00 +0100\n"
    "MIME-Version: 1.0\n"
    'Content-Type: multipart/mixed; boundary="000000000000"\n'
)
PHOTO = b"\xff\xd8\xff\xe0fake-jpeg-bytes\x00\x01"

FIELDS = {
    "headers": HEADERS,
    "dkim": "{@example.com : pass}",
    "to": "support@parse.acme.example",
    "from": "Jane Doe <Jane.Doe@example.com>",
    "text": "Hello,\nthe box was crushed. Photo attached.\nJane\n",
    "html": "<p>Hello,</p><p>the box was crushed.</p>",
    "sender_ip": "209.85.223.180",
    "envelope": json.dumps({"to": ["support@parse.acme.example"], "from": "Jane.Doe@example.com"}),
    "attachments": "1",
    "subject": "Re: Order #42 arrived damaged",
    "attachment-info": json.dumps({"attachment1": {"filename": "photo.jpg", "name": "photo.jpg",
                                                   "type": "image/jpeg"}}),
    "charsets": json.dumps({"to": "UTF-8", "html": "UTF-8", "subject": "UTF-8", "from": "UTF-8",
                            "text": "UTF-8"}),
    "SPF": "pass",
}


def basic(user="sendgrid", password=NEW):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def post(fields, auth=None, files=None):
    body, ctype = encode_multipart_formdata(
        [*fields.items(), *((files or {}).items())])
    return request(body, headers={"Content-Type": ctype, "Authorization": auth or basic()})


def parse(fields, files=None):
    return roundtrip(list(ADAPTER.parse(post(fields, files=files), ACCOUNT)))


@pytest.mark.parametrize("auth", [basic(), basic(password=OLD),
                                  "Basic " + base64.b64encode(NEW.encode()).decode()],
                         ids=["current", "previous (rotation)", "secret alone"])
def test_basic_auth_with_rotation(auth):
    ADAPTER.verify(post(FIELDS, auth=auth), ACCOUNT)


@pytest.mark.parametrize("auth, status", [
    (None, 401), (basic(password="guess"), 403), ("Bearer abc", 403), ("Basic %%%", 403)])
def test_bad_or_missing_credentials(auth, status):
    req = post(FIELDS)
    headers = {k: v for k, v in req.headers.items() if k != "authorization"}
    if auth:
        headers["authorization"] = auth
    with pytest.raises(Rejected) as e:
        ADAPTER.verify(replace(req, headers=headers), ACCOUNT)
    assert e.value.status == status


def test_parsed_email_field_by_field():
    [ev] = parse(FIELDS, files={"attachment1": ("photo.jpg", PHOTO, "image/jpeg")})
    check_envelope(ev, event_type="MessageReceived", adapter="email", key=MSG_ID,
                   channel="email", customer="jane.doe@example.com",
                   occurred_at=1731396000000)  # the Date header, 2024-11-12 07:20:00 UTC
    assert ev["references"] == ["<first@acme.example>", "<reply-1@acme.example>"]
    assert ev["sender"] == {"channel": "email", "id": "jane.doe@example.com",
                            "display_name": "Jane Doe", "phone_e164": None,
                            "email": "jane.doe@example.com", "login_id": None}
    assert ev["channel_message_id"] == MSG_ID
    assert ev["subject"] == "Re: Order #42 arrived damaged"
    assert ev["text"] == "Hello,\nthe box was crushed. Photo attached.\nJane\n"
    assert ev["reply_to_channel_message_id"] == "<reply-1@acme.example>"
    assert ev["channel_account_id"] == "support@parse.acme.example"
    assert ev["attachments"] == [{
        "kind": "image", "media_id": f"raw:{RAW_ID}#attachment1", "url": None,
        "mime_type": "image/jpeg", "size_bytes": len(PHOTO),
        "sha256": hashlib.sha256(PHOTO).hexdigest(), "caption": None, "filename": "photo.jpg"}]


def test_references_when_there_is_no_in_reply_to():
    headers = HEADERS.replace("In-Reply-To: <reply-1@acme.example>\n", "")
    [ev] = parse({**FIELDS, "headers": headers})
    assert ev["reply_to_channel_message_id"] == "<reply-1@acme.example>"


def test_receipt_time_when_the_date_header_is_missing_or_bad():
    for date in ("", "Date: not a date\n"):
        headers = HEADERS.replace("Date: Tue, 12 Nov 2024 08:20:00 +0100\n", date)
        [ev] = parse({**FIELDS, "headers": headers})
        assert ev["envelope"]["occurred_at"] == RECEIVED_AT


def test_html_only_email_gets_its_text_extracted():
    fields = {k: v for k, v in FIELDS.items() if k != "text"}
    [ev] = parse(fields)
    assert ev["text"] == "Hello, the box was crushed."


def test_declared_charset_is_honoured():
    body, ctype = encode_multipart_formdata([
        ("headers", HEADERS), ("from", "Zoé <zoe@example.fr>"),
        ("subject", "Commande abîmée".encode("iso-8859-1")),
        ("text", "Bonjour, le colis est abîmé.".encode("iso-8859-1")),
        ("charsets", json.dumps({"subject": "iso-8859-1", "text": "iso-8859-1"}))])
    [ev] = roundtrip(list(ADAPTER.parse(request(body, headers={"Content-Type": ctype}), ACCOUNT)))
    assert ev["subject"] == "Commande abîmée"
    assert ev["text"] == "Bonjour, le colis est abîmé."
    assert ev["sender"]["display_name"] == "Zoé"


def raw_mime() -> bytes:
    msg = EmailMessage()
    msg["From"] = "Jane Doe <jane.doe@example.com>"
    msg["To"] = "support@parse.acme.example"
    msg["Subject"] = "=?utf-8?q?Remboursement_command=C3=A9?="
    msg["Message-ID"] = "<raw-1@mail.example.com>"
    msg["References"] = "<first@acme.example>"
    msg.set_content("I would like a refund.\n")
    msg.add_attachment(b"%PDF-1.4 invoice", maintype="application", subtype="pdf",
                       filename="invoice.pdf")
    return bytes(msg)


def test_raw_mime_mode():
    [ev] = parse({"email": raw_mime(), "to": "support@parse.acme.example",
                  "envelope": FIELDS["envelope"], "charsets": "{}"})
    assert ev["channel_message_id"] == "<raw-1@mail.example.com>"
    assert ev["subject"] == "Remboursement commandé"
    assert ev["text"] == "I would like a refund.\n"
    assert ev["reply_to_channel_message_id"] == "<first@acme.example>"
    [a] = ev["attachments"]
    assert (a["kind"], a["filename"], a["mime_type"], a["size_bytes"], a["media_id"]) == \
        ("document", "invoice.pdf", "application/pdf", 16, f"raw:{RAW_ID}#email/1")


def test_redelivery_same_id_and_missing_message_id_uses_the_body_hash():
    a = ADAPTER.parse(post(FIELDS), ACCOUNT)[0]
    b = ADAPTER.parse(replace(post(FIELDS), received_at_ms=RECEIVED_AT + 9), ACCOUNT)[0]
    assert a["envelope"]["event_id"] == b["envelope"]["event_id"]
    no_id = {**FIELDS, "headers": HEADERS.replace(f"Message-ID: {MSG_ID}\n", "")}
    req = post(no_id)
    [ev] = ADAPTER.parse(req, ACCOUNT)
    assert ev["channel_message_id"] == "sha256:" + hashlib.sha256(req.body).hexdigest()


def test_limit_matches_sendgrids_30mb_cap():
    assert ADAPTER.max_body_bytes == 30 * 1024 * 1024


@pytest.mark.parametrize("ctype, body", [
    ("application/json", b"{}"),
    ("multipart/form-data", b"--x\r\n"),
    ("multipart/form-data; boundary=nothere", b"garbage without parts"),
])
def test_malformed_bodies_are_400(ctype, body):
    with pytest.raises(Rejected) as e:
        ADAPTER.parse(request(body, headers={"Content-Type": ctype}), ACCOUNT)
    assert e.value.status == 400


@pytest.mark.parametrize("fields", [{"spam_score": "0.1"}, {**FIELDS, "from": "undisclosed"}])
def test_unmappable(fields):
    with pytest.raises(Unmappable):
        ADAPTER.parse(post(fields), ACCOUNT)
