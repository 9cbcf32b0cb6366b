"""Threading decisions (streams/threads/logic.py), without a broker."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parley.app.synthetic import events as f
from schemas.codec import Codec
from streams.threads import logic
from streams.threads.logic import CustomerThreads, Rules

T, MIN, HOUR, DAY = f.T0, f.MIN, f.HOUR, 24 * f.HOUR
CUST = "cust-1"
WA = f.identity("whatsapp", "33612345678", phone="+33612345678")
MAIL = f.identity("email", "zoe@example.com", email="zoe@example.com")
RULES = Rules(reopen_window_ms=7 * DAY, continue_window_ms=3 * DAY, auto_resolve_after_ms=0)


def msg(text, at, n, ident=WA, **kw):
    return f.received("acme", ident, text, at, n=n, customer_id=CUST, **kw)


def run(events, rules=RULES, state=None, replies=None):
    """Step the events in as the conversations stage does, keeping its message id -> thread
    index for replies."""
    state = state or CustomerThreads()
    replies = {} if replies is None else replies
    out = []
    for e in events:
        state, produced = logic.step(state, e, rules, replies.get)
        for p in produced:
            if p.get("thread_id") and p["envelope"]["event_type"] in ("MessageReceived", "MessageSent"):
                replies.update({mid: p["thread_id"] for mid in logic.reply_ids(p)})
        out.extend(produced)
    return state, out


def thread_of(out, event):
    eid = event["envelope"]["event_id"]
    kind = event["envelope"]["event_type"]
    (m,) = [e for e in out if e["envelope"]["event_id"] == eid and e["envelope"]["event_type"] == kind]
    return m["thread_id"]


def kinds(out):
    return [e["envelope"]["event_type"] for e in out]


@pytest.mark.parametrize("raw, expected", [
    ("Re: Order 123", "order 123"),
    ("RE: Fwd: TR: Ma commande", "ma commande"),
    ("Fw:   re :  Hello   world", "hello world"),
    ("AW: WG: Rechnung", "rechnung"),
    ("[Ticket #99] Re: broken", "broken"),
    ("Re:", None),
    ("", None),
    (None, None),
])
def test_normalise_subject(raw, expected) -> None:
    assert logic.normalise_subject(raw) == expected


@pytest.mark.parametrize("text, expected", [
    ("Where is my order 123456?", ("123456",)),
    ("ma commande n° 98765 n'est pas arrivée", ("98765",)),
    ("Commande N°AB-1234 et facture FA-20250012", ("AB1234", "FA20250012")),
    ("ticket #4521, see also #4521", ("4521",)),
    ("Invoice: INV-2025-001", ("INV2025001",)),
    ("call me on 06 12 34 56 78", ()),
    ("order 12", ()),
    ("", ()),
])
def test_references(text, expected) -> None:
    assert logic.references(text) == expected


def _references_by_full_scan(text: str) -> tuple[str, ...]:
    """``references`` without its pre-check: every text through the whole pattern."""
    found: list[str] = []
    for m in logic._REF.finditer(text):
        ref = m.group("ref").upper().replace("-", "")
        if sum(ch.isdigit() for ch in ref) >= 3 and ref not in found:
            found.append(ref)
    return tuple(found)


_REF_PIECES = st.sampled_from(["order ", "Commande n° ", "ticket #", "#", "ref.", "INV-", "ab", "-", " ", "x", "é",
                               "\u017f", "\u212a", "0", "12", "345", "٣", "1ab", "Zk", "N°", ":", "\n"])


@settings(max_examples=400)
@given(st.lists(_REF_PIECES, max_size=14).map("".join) | st.text(max_size=40))
def test_references_pre_check_finds_what_the_whole_pattern_finds(text) -> None:
    assert logic.references(text) == _references_by_full_scan(text)


def test_first_message_starts_a_thread_and_is_threaded() -> None:
    m = msg("Hello", T, 1)
    state, out = run([m])
    assert kinds(out) == ["ConversationStarted", "MessageReceived"]
    started, threaded = out
    assert started["thread_id"] == threaded["thread_id"]
    assert started["first_message_event_id"] == m["envelope"]["event_id"]
    assert started["envelope"]["causation_id"] == m["envelope"]["event_id"]
    assert threaded["envelope"]["event_id"] == m["envelope"]["event_id"]
    assert len(state.threads) == 1
    for e in out:
        Codec().encode(e)


def test_chat_messages_continue_the_open_thread() -> None:
    a, b = msg("Hello", T, 1), msg("are you there?", T + 10 * MIN, 2)
    _, out = run([a, b])
    assert kinds(out) == ["ConversationStarted", "MessageReceived", "MessageReceived"]
    assert thread_of(out, a) == thread_of(out, b)


def test_same_order_on_another_channel_joins_the_thread() -> None:
    wa = msg("my order 123456 has not arrived", T, 1)
    other = msg("Hi, question about shoes", T + MIN, 2)  # continues (no conflicting reference)
    mail = msg("Any news?", T + 2 * HOUR, 3, ident=MAIL, subject="Order 123456 still missing")
    _, out = run([wa, other, mail])
    assert thread_of(out, wa) == thread_of(out, other) == thread_of(out, mail)


def test_a_new_reference_starts_a_new_thread() -> None:
    a = msg("order 123456 is late", T, 1)
    b = msg("and I need an invoice for order 777777", T + MIN, 2)
    c = msg("about order 123456 again", T + 2 * MIN, 3)
    _, out = run([a, b, c])
    assert thread_of(out, a) != thread_of(out, b)
    assert thread_of(out, c) == thread_of(out, a)
    assert kinds(out).count("ConversationStarted") == 2


def test_email_subjects_thread_and_a_new_subject_starts_a_thread() -> None:
    first = msg("text", T, 1, ident=MAIL, subject="Delivery address")
    reply = msg("text", T + HOUR, 2, ident=MAIL, subject="RE: TR: delivery address")
    other = msg("text", T + 2 * HOUR, 3, ident=MAIL, subject="Password reset")
    _, out = run([first, reply, other])
    assert thread_of(out, first) == thread_of(out, reply)
    assert thread_of(out, other) != thread_of(out, first)
    started = [e for e in out if e["envelope"]["event_type"] == "ConversationStarted"]
    assert [s["subject"] for s in started] == ["Delivery address", "Password reset"]


def test_email_reply_references_find_the_thread_even_with_a_changed_subject() -> None:
    out_mail = f.sent("acme", MAIL, "We are on it", T + MIN, customer_id=CUST, channel_message_id="<m1@shop>")
    first = msg("text", T, 1, ident=MAIL, subject="Broken zip")
    reply = msg("text", T + HOUR, 2, ident=MAIL, subject="Something else entirely", references=["<m1@shop>"])
    _, out = run([first, out_mail, reply])
    assert thread_of(out, reply) == thread_of(out, first)


def test_resolved_thread_reopens_within_the_window() -> None:
    a = msg("help", T, 1)
    state, out = run([a])
    tid = thread_of(out, a)
    resolve = f.thread_command("ConversationResolved", "acme", CUST, tid, T + HOUR, resolved_by="agent", agent_id="a1")
    b = msg("it broke again", T + 2 * DAY, 2)
    state, out = run([resolve, b], state=state)
    assert kinds(out) == ["ConversationResolved", "ConversationReopened", "MessageReceived"]
    assert out[0] == resolve  # the agent's command is the fact, passed on unchanged
    assert out[1]["thread_id"] == tid == thread_of(out, b)
    assert out[1]["message_event_id"] == b["envelope"]["event_id"]


def test_after_the_reopen_window_a_new_thread_starts() -> None:
    a = msg("help with order 123456", T, 1)
    state, out = run([a])
    tid = thread_of(out, a)
    resolve = f.thread_command("ConversationResolved", "acme", CUST, tid, T + HOUR, resolved_by="agent")
    b = msg("order 123456 broke again", T + HOUR + 8 * DAY, 2)
    c = msg("still about order 123456", T + HOUR + 8 * DAY + MIN, 3)
    _, out = run([resolve, b, c], state=state)
    assert kinds(out) == ["ConversationResolved", "ConversationStarted", "MessageReceived", "MessageReceived"]
    assert thread_of(out, b) != tid
    assert thread_of(out, c) == thread_of(out, b)  # the reference now leads to the newest thread


def test_a_stale_open_thread_is_not_continued_by_a_subjectless_message() -> None:
    a, b = msg("hello", T, 1), msg("hello again", T + 4 * DAY, 2)
    _, out = run([a, b])
    assert thread_of(out, a) != thread_of(out, b)


@pytest.mark.parametrize("last_word, silent_for, resolved", [
    ("agent", 5 * HOUR, True),
    ("agent", 3 * HOUR, False),
    ("bot", 5 * HOUR, True),
    ("automation", 5 * HOUR, False),  # an out-of-hours notice is no answer
    ("customer", 5 * HOUR, False),
])
def test_inactivity_resolves_in_event_time(last_word, silent_for, resolved) -> None:
    rules = Rules(auto_resolve_after_ms=4 * HOUR)
    a = msg("help", T, 1)
    state, out = run([a], rules)
    tid = thread_of(out, a)
    last = (f.sent("acme", WA, "done", T + MIN, author_type=last_word, customer_id=CUST, thread_id=tid)
            if last_word != "customer" else msg("hello?", T + MIN, 2))
    nxt = msg("new question", T + MIN + silent_for, 3)
    _, out = run([last, nxt], rules, state)
    timeouts = [e for e in out if e["envelope"]["event_type"] == "ConversationResolved"]
    if resolved:
        (r,) = timeouts
        assert r["resolved_by"] == "timeout" and r["thread_id"] == tid
        assert r["envelope"]["occurred_at"] == T + MIN + 4 * HOUR  # the deadline, not the arrival
        assert kinds(out)[1:] == ["ConversationResolved", "ConversationReopened", "MessageReceived"]
    else:
        assert timeouts == []


def test_a_timer_at_the_deadline_resolves_as_the_next_event_would() -> None:
    """The stage sets a timer at ``next_deadline``; ``expire`` then emits the same
    ConversationResolved (same id, same content) as a later customer event would have."""
    rules = Rules(auto_resolve_after_ms=4 * HOUR)
    a = msg("help", T, 1)
    state, out = run([a], rules)
    tid = thread_of(out, a)
    assert logic.next_deadline(state, rules) is None  # the customer had the last word
    state, _ = run([f.sent("acme", WA, "done", T + MIN, customer_id=CUST, thread_id=tid)], rules, state)
    deadline = logic.next_deadline(state, rules)
    assert deadline == T + MIN + 4 * HOUR
    assert logic.expire(state, deadline - 1, "acme", CUST, rules)[1] == []
    expired, (timer_out,) = logic.expire(state, deadline, "acme", CUST, rules)
    _, later = run([msg("new question", deadline + HOUR, 3)], rules, state)
    assert timer_out == later[0]
    assert logic.next_deadline(expired, rules) is None
    assert expired.get(tid).resolved_at == deadline


def test_a_message_written_before_the_resolve_does_not_reopen() -> None:
    """In event time: a customer message older than the thread's resolution (arrived late)
    joins the resolved thread; one after it reopens."""
    a = msg("help", T, 1)
    state, out = run([a])
    tid = thread_of(out, a)
    resolve = f.thread_command("ConversationResolved", "acme", CUST, tid, T + 10 * MIN, resolved_by="agent")
    state, _ = run([resolve], state=state)
    state, before = run([msg("thanks!", T + 9 * MIN, 2)], state=state)
    assert kinds(before) == ["MessageReceived"] and before[0]["thread_id"] == tid
    _, after = run([msg("one more thing", T + 11 * MIN, 3)], state=state)
    assert kinds(after) == ["ConversationReopened", "MessageReceived"]


def test_resolving_twice_or_an_unknown_thread_emits_nothing() -> None:
    a = msg("help", T, 1)
    state, out = run([a])
    tid = thread_of(out, a)
    r1 = f.thread_command("ConversationResolved", "acme", CUST, tid, T + HOUR, resolved_by="agent", n=1)
    r2 = f.thread_command("ConversationResolved", "acme", CUST, tid, T + HOUR, resolved_by="agent", n=2)
    r3 = f.thread_command("ConversationResolved", "acme", CUST, "nope", T + HOUR, resolved_by="agent", n=3)
    _, out = run([r1, r2, r3], state=state)
    assert out == [r1]


def test_outbound_first_message_starts_a_thread() -> None:
    s = f.sent("acme", WA, "Your parcel ships today", T, author_type="automation", customer_id=CUST)
    _, out = run([s])
    assert kinds(out) == ["ConversationStarted", "MessageSent"]
    assert out[1]["thread_id"] == out[0]["thread_id"]


def test_agent_reply_joins_the_open_thread_and_transfer_passes_through() -> None:
    a = msg("help", T, 1)
    state, out = run([a])
    tid = thread_of(out, a)
    reply = f.sent("acme", WA, "on it", T + MIN, customer_id=CUST)
    move = f.thread_command("ConversationTransferred", "acme", CUST, tid, T + 2 * MIN, to_queue="billing")
    _, out = run([reply, move, f.delivery("acme", WA, T + 3 * MIN)], state=state)
    assert kinds(out) == ["MessageSent", "ConversationTransferred"]
    assert out[0]["thread_id"] == tid


def test_state_round_trips_json_and_is_bounded() -> None:
    events = [msg(f"order {100000 + i} please", T + i * MIN, i) for i in range(logic.MAX_THREADS + 10)]
    state, _ = run(events)
    assert len(state.threads) == logic.MAX_THREADS
    assert CustomerThreads.from_json(json.loads(json.dumps(state.to_json()))) == state


def test_a_thread_row_holds_every_field_in_its_place() -> None:
    """The changelog's row layout (``Thread.to_row``) names each field once, in order."""
    values = {f.name: f"v{i}" for i, f in enumerate(dataclasses.fields(logic.Thread))}
    thread = logic.Thread(**{**values, "refs": ("R1", "R2")})
    row = json.loads(json.dumps(thread.to_row()))
    assert row == [["R1", "R2"] if name == "refs" else v for name, v in values.items()]
    assert logic.Thread.from_row(row) == thread
