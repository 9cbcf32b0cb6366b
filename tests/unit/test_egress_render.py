"""Render and degrade per channel (pure): what was asked, what was sent, and why."""

from __future__ import annotations

import pytest

from egress.capabilities import CAPS, caps_for
from egress.content import blank, canonical
from egress.render import RenderError, render, split
from egress.templates import Template


def make_content(**overrides):
    return {**blank(), **overrides}


def buttons(n: int, **extra):
    return [{"id": f"b{i}", "title": f"Option {i}", "url": None, **extra} for i in range(1, n + 1)]


@pytest.mark.parametrize(("channel", "n", "shown_as"), [
    ("whatsapp", 3, "buttons"), ("whatsapp", 4, "list"), ("whatsapp", 10, "list"),
    ("whatsapp", 11, "text:numbered_options"), ("messenger", 3, "buttons"), ("messenger", 5, "quick_replies"),
    ("instagram", 3, "quick_replies"), ("telegram", 8, "buttons"), ("line", 4, "buttons"), ("line", 6, "quick_replies"),
    ("viber", 12, "buttons"), ("rbm", 11, "buttons"), ("sms", 2, "text:numbered_options"),
    ("email", 2, "text:numbered_options"), ("wechat", 3, "text:numbered_options"), ("webchat", 10, "buttons"),
])
def test_reply_buttons_go_to_the_first_form_that_holds_them(channel, n, shown_as) -> None:
    out = render(make_content(text="Which one?", buttons=buttons(n)), CAPS[channel])
    assert shown_as in out.decision["sent"], out.decision
    assert out.decision["asked"] == ["text", "buttons"]
    if shown_as != "buttons":
        assert out.decision["reasons"], "a degradation always says why"
    if shown_as.startswith("text"):
        assert "1. Option 1" in out.parts[0]["text"] and f"{n}. Option {n}" in out.parts[0]["text"]


def test_carousel_degrades_to_a_list_then_to_text() -> None:
    cards = [{"title": f"Shoe {i}", "subtitle": "size 42", "image_url": None, "url": f"https://s/{i}",
              "buttons": [{"id": f"buy-{i}", "title": "Buy", "url": None}]} for i in range(3)]
    msg = make_content(text="Our picks", cards=cards)
    assert render(msg, CAPS["messenger"]).parts[-1]["type"] == "cards"
    wa = render(msg, CAPS["whatsapp"])
    assert wa.parts[0]["list"]["rows"][0]["id"] == "buy-0"
    assert any("carousel" in r for r in wa.decision["reasons"])
    sms = render(msg, CAPS["sms"])
    assert "1. Shoe 0" in sms.parts[0]["text"] and "Shoe 0: https://s/0" in sms.parts[0]["text"]


def test_long_text_is_split_at_the_limit_and_options_ride_on_the_last_piece() -> None:
    text = " ".join(["word"] * 1200)  # 5999 characters
    out = render(make_content(text=text, buttons=buttons(2)), CAPS["whatsapp"])
    texts = [p["text"] for p in out.parts]
    assert all(len(t) <= 4096 for t in texts) and len(out.parts) >= 2
    assert "buttons" in out.parts[-1] and len(out.parts[-1]["text"]) <= 1024
    assert " ".join(texts).replace("  ", " ").count("word") == 1200


def test_instagram_limit_is_in_bytes() -> None:
    out = render(make_content(text="é" * 800), CAPS["instagram"])  # 1600 bytes
    assert len(out.parts) == 2 and all(len(p["text"].encode()) <= 1000 for p in out.parts)


@pytest.mark.parametrize("text", ["a" * 10, "word " * 500, "x" * 9000, "line\n" * 700])
def test_split_keeps_every_character_but_the_cut_spaces(text) -> None:
    pieces = split(text, 1000)
    assert all(len(p) <= 1000 for p in pieces)
    assert "".join(pieces).replace(" ", "").replace("\n", "") == text.replace(" ", "").replace("\n", "")


def test_location_is_a_pin_or_a_map_link() -> None:
    loc = {"latitude": 48.85, "longitude": 2.35, "name": "Shop", "address": "1 rue X"}
    assert render(make_content(location=loc), CAPS["telegram"]).parts[0]["type"] == "location"
    out = render(make_content(location=loc), CAPS["email"])
    assert "https://maps.google.com/?q=48.85,2.35" in out.parts[0]["text"]
    assert out.decision["sent"] == ["text:location_link", "text"]


def test_media_too_large_is_refused_not_degraded() -> None:
    video = {"kind": "video", "url": "https://x/v.mp4", "media_id": None, "size_bytes": 30 * 2**20, "caption": None,
             "filename": None, "mime_type": None, "sha256": None}
    with pytest.raises(RenderError) as e:
        render(make_content(media=[video]), CAPS["whatsapp"])
    assert e.value.code == "media_too_large" and "16777216" in e.value.reason


def test_media_a_channel_cannot_carry_becomes_a_link() -> None:
    doc = {"kind": "document", "url": "https://x/invoice.pdf", "media_id": None, "size_bytes": 1000,
           "caption": "Invoice", "filename": None, "mime_type": None, "sha256": None}
    out = render(make_content(text="Here it is", media=[doc]), CAPS["wechat"])
    assert "Invoice: https://x/invoice.pdf" in out.parts[0]["text"]
    assert render(make_content(media=[doc]), CAPS["whatsapp"]).parts[0]["type"] == "media"


def test_template_is_sent_as_template_or_as_its_filled_text() -> None:
    t = Template("order_update", "en", "utility", 2, "Order {{1}} ships on {{2}}.")
    msg = make_content(template={"name": "order_update", "language": "en", "parameters": ["A-1", "Monday"]})
    wa = render(msg, CAPS["whatsapp"], t, "template")
    assert wa.parts[0]["template"]["parameters"] == ["A-1", "Monday"] and wa.decision["mode"] == "template"
    tg = render(msg, CAPS["telegram"], t)
    assert tg.parts[0]["text"] == "Order A-1 ships on Monday." and tg.decision["reasons"]


def test_twilio_whatsapp_has_its_own_capabilities() -> None:
    assert caps_for("whatsapp", "twilio").reply_buttons == 0
    assert caps_for("whatsapp", "whatsapp").reply_buttons == 3


def test_empty_message_is_an_error() -> None:
    with pytest.raises(RenderError):
        render(make_content(), CAPS["sms"])


def test_v1_fields_read_into_the_canonical_message() -> None:
    msg = canonical({"text": "Pick", "attachments": [], "kind": "free_form", "template_name": None,
                     "rich": {"kind": "quick_replies", "payload": None, "title": None,
                              "data_json": '{"options": [{"id": "y", "title": "Yes"}, {"id": "n", "title": "No"}]}'}})
    assert [q["id"] for q in msg["quick_replies"]] == ["y", "n"]
    tpl = canonical({"text": None, "attachments": [], "kind": "template", "template_name": "welcome", "rich": None})
    assert tpl["template"] == {"name": "welcome", "language": "en", "parameters": []}
