"""Threads by subject: a customer's messages grouped per request, across channels (pure logic).

Consumes: MessageReceived, MessageSent (customer id set), and the agent API's
    ConversationResolved / ConversationTransferred commands, from ``parley.conversation.messages``
    (key tenant|customer). DeliveryStatusChanged is read and ignored.
Produces: ConversationStarted, ConversationReopened, ConversationResolved (by an agent, or by
    inactivity in event time) and the message with ``thread_id`` set, same event id, to
    ``parley.conversations`` (key tenant|customer).
Key: tenant|customer, co-partitioned with the input: no repartition.
State: one :class:`CustomerThreads` per customer: its recent threads (subject, order/ticket
    references, activity times, open or resolved). Kept apart by the stage, so this record stays
    small: which thread each message id belongs to (``replied``: e-mail References, replies
    quoting a message) and the ids of the events already applied. On the changelog a customer's
    record is a list of rows, one per thread, without field names (``Thread.to_row``).

Which thread a customer message joins, in order:
1. the thread holding a message it replies to (e-mail In-Reply-To/References, quoted message);
2. the most recent thread sharing an order/ticket reference found in its text or subject;
3. the most recent thread with the same normalised subject (Re:/Fwd:/TR: stripped);
4. with no subject and no conflicting reference, the most recent open thread active within
   ``continue_window``; a message naming a reference the recent thread does not have, or an
   e-mail with a new subject, starts a new thread.
A resolved thread found this way reopens if the message comes within ``reopen_window`` of its
resolution, else a new thread starts (and the references now lead to the new one).

Resolution: agents (and bots) resolve through the agent API, which writes ConversationResolved
to the input topic; a thread whose last word was the business's (agent or bot) and whose
customer stayed silent for ``auto_resolve_after`` is resolved by ``timeout`` at the deadline,
in event time: :func:`next_deadline` tells the stage when, and :func:`expire` resolves (the
stage sets an event-time timer; a customer event after the deadline also resolves first).
Order: the stage feeds a customer's events in event-time order (``streams.runtime``), so the
decisions are a function of the set of events. Idempotency: the stage drops event ids it has
applied. Replay-safe: yes; ids derive from input ids, times from ``occurred_at``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from schemas import topics
from schemas.events import caused_by, derive_id, envelope, make
from streams.frozen import replace

PRODUCER = "streams/threads"
MAX_THREADS = 50
BUSINESS_REPLIES = frozenset({"agent", "bot"})  # automation notices are not an answer

_PREFIX = re.compile(r"^\s*(?:(?:re|fwd?|tr|aw|wg|sv|vs|antw|rif|r)\s*(?:\[\d+\])?\s*:\s*|\[[^\]]*\]\s*)+",
                     re.IGNORECASE)
_REF = re.compile(
    r"(?:\b(?:order|commande|cmd|ticket|case|dossier|facture|invoice|colis|parcel|tracking|r[ée]f[ée]rence|ref)"
    r"\b\.?\s*(?:n\s*[°ºo]\.?|no\.?|num[ée]ro|number|nr\.?)?\s*[:#]?\s*|#\s*)"
    r"(?P<ref>[A-Z]{0,4}-?\d[\dA-Z-]{3,}\b)",
    re.IGNORECASE,
)
# in every match of _REF (its digit and the three characters after it): a text without it names no
# reference, and this scan costs a tenth of _REF's (most messages stop here)
_MAY_REF = re.compile(r"\d[\dA-Z-]{3}", re.IGNORECASE)


@dataclass(frozen=True)
class Rules:
    reopen_window_ms: int = 7 * 24 * 3600 * 1000
    continue_window_ms: int = 3 * 24 * 3600 * 1000
    auto_resolve_after_ms: int = 0  # 0: only agents resolve


@dataclass(frozen=True)
class Thread:
    thread_id: str
    started_at: int
    last_activity_at: int
    subject: str | None = None  # normalised
    refs: tuple[str, ...] = ()
    last_customer_at: int | None = None
    last_business_at: int | None = None
    resolved_at: int | None = None

    @property
    def open(self) -> bool:
        return self.resolved_at is None

    # On the store's changelog a thread is a row, a JSON array without field names (a
    # customer's record, up to MAX_THREADS threads, is written again on each of their messages):
    # [thread_id, started_at, last_activity_at, subject, refs, last_customer_at,
    #  last_business_at, resolved_at]
    def to_row(self) -> list[Any]:
        return [self.thread_id, self.started_at, self.last_activity_at, self.subject, self.refs,
                self.last_customer_at, self.last_business_at, self.resolved_at]

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Thread:
        (thread_id, started_at, last_activity_at, subject, refs, last_customer_at,
         last_business_at, resolved_at) = row
        return cls(thread_id, started_at, last_activity_at, subject, tuple(refs), last_customer_at,
                   last_business_at, resolved_at)


@dataclass(frozen=True)
class CustomerThreads:
    threads: tuple[Thread, ...] = ()  # most recently active first

    def get(self, thread_id: str) -> Thread | None:
        return next((t for t in self.threads if t.thread_id == thread_id), None)

    def to_json(self) -> list[list[Any]]:
        """The changelog value: one row per thread (``Thread.to_row``), most recent first."""
        return [t.to_row() for t in self.threads]

    @classmethod
    def from_json(cls, rows: Sequence[Sequence[Any]] | None) -> CustomerThreads:
        if not rows:
            return cls()
        return cls(tuple(Thread.from_row(row) for row in rows))


# --- text features ---------------------------------------------------------------------------

def normalise_subject(subject: str | None) -> str | None:
    """``Re: Fwd: TR: [Ticket] Order 123`` -> ``order 123``; None when nothing is left."""
    if not subject:
        return None
    s = _PREFIX.sub("", subject)
    s = " ".join(s.split()).casefold()
    return s or None


def references(*texts: str | None) -> tuple[str, ...]:
    """Order/ticket/invoice numbers named in the texts, normalised (upper case, no dashes)."""
    found: list[str] = []
    for text in texts:
        if not text or _MAY_REF.search(text) is None:
            continue
        for m in _REF.finditer(text):
            ref = m.group("ref").upper().replace("-", "")
            if sum(ch.isdigit() for ch in ref) >= 3 and ref not in found:
                found.append(ref)
    return tuple(found)


def text_features(msg: Mapping[str, Any]) -> tuple[str | None, tuple[str, ...]]:
    """What a customer message is matched to threads on: its normalised subject and references."""
    return normalise_subject(msg.get("subject")), references(msg.get("subject"), msg.get("text"))


# --- decide ----------------------------------------------------------------------------------

Replied = Callable[[str], "str | None"]  # message id -> the thread holding it, if known
# a customer message -> (normalised subject, references): ``text_features``, or tokens of them
# when the message is sealed (``streams.privacy.thread_features``)
Features = Callable[[Mapping[str, Any]], "tuple[str | None, tuple[str, ...]]"]


def _none(_: str) -> None:
    return None


def decide(state: CustomerThreads, event: dict[str, Any], rules: Rules,
           replied: Replied = _none) -> list[dict[str, Any]]:
    """What ``event`` causes: timeouts first, then the thread event and the threaded message."""
    return step(state, event, rules, replied)[1]


def evolve(state: CustomerThreads, event: dict[str, Any], rules: Rules, replied: Replied = _none) -> CustomerThreads:
    return step(state, event, rules, replied)[0]


def step(state: CustomerThreads, event: dict[str, Any], rules: Rules,
         replied: Replied = _none, features: Features = text_features) -> tuple[CustomerThreads, list[dict[str, Any]]]:
    """The new state and the events emitted for ``event``; ``replied`` finds the thread of a
    message id the event refers to (e-mail References, a reply quoting a message); ``features``
    says what a customer message is matched on."""
    kind = event["envelope"]["event_type"]
    if kind == "DeliveryStatusChanged":
        return state, []
    state, out = _timeouts(state, event["envelope"]["occurred_at"], event["envelope"]["tenant_id"],
                           event.get("customer_id") or "", rules)
    if kind == "MessageReceived":
        state, more = _customer_message(state, event, rules, replied, features)
    elif kind == "MessageSent":
        state, more = _business_message(state, event)
    elif kind == "ConversationResolved":
        state, more = _resolve(state, event)
    elif kind == "ConversationTransferred":
        more = [event] if state.get(event["thread_id"]) else []
    else:
        more = []
    return state, out + more


def reply_ids(event: Mapping[str, Any]) -> tuple[str, ...]:
    """The ids a later message may refer to this one by (channel message id, our message id)."""
    return tuple(i for i in (event.get("channel_message_id"), event.get("message_id")) if i)


def next_deadline(state: CustomerThreads, rules: Rules) -> int | None:
    """When the earliest open thread with the business's last word times out, if ever."""
    if not rules.auto_resolve_after_ms:
        return None
    deadlines = [t.last_business_at + rules.auto_resolve_after_ms for t in state.threads
                 if t.open and t.last_business_at is not None and (t.last_customer_at or 0) <= t.last_business_at]
    return min(deadlines, default=None)


def expire(state: CustomerThreads, at: int, tenant: str, customer: str,
           rules: Rules) -> tuple[CustomerThreads, list[dict[str, Any]]]:
    """Resolve by ``timeout`` the customer's threads whose deadline is at or before ``at``."""
    return _timeouts(state, at, tenant, customer, rules)


def _customer_message(state: CustomerThreads, msg: dict[str, Any], rules: Rules, replied: Replied,
                      features: Features = text_features) -> tuple[CustomerThreads, list[dict[str, Any]]]:
    at = msg["envelope"]["occurred_at"]
    subject, refs = features(msg)
    found = _match(state, msg, subject, refs, at, rules, replied)
    out: list[dict[str, Any]] = []
    if found is not None and not found.open and at - found.resolved_at > rules.reopen_window_ms:
        found = None  # too late to reopen: a new thread carries the subject on
    if found is None:
        thread = Thread(derive_id(msg["envelope"]["tenant_id"], msg["customer_id"], "thread",
                                  msg["envelope"]["event_id"]), at, at, subject)
        out.append(_started(msg, thread, msg.get("subject")))
    elif not found.open and at < found.resolved_at:
        thread = found  # written before the thread was resolved, arrived after: no reopen
    elif not found.open:
        thread = replace(found, resolved_at=None)
        out.append(_event(msg, "ConversationReopened", thread.thread_id, message_event_id=msg["envelope"]["event_id"]))
    else:
        thread = found
    thread = _touch(thread, at, customer=True, refs=refs, subject=subject)
    return _put(state, thread), [*out, {**msg, "thread_id": thread.thread_id}]


def _match(state: CustomerThreads, msg: dict[str, Any], subject: str | None, refs: tuple[str, ...],
           at: int, rules: Rules, replied: Replied) -> Thread | None:
    quoted = {*msg.get("references", ()), msg.get("reply_to_channel_message_id")} - {None}
    held = {tid for mid in sorted(quoted) if (tid := replied(mid))}
    for t in state.threads:  # most recent first
        if t.thread_id in held:
            return t
    for t in state.threads:
        if set(refs) & set(t.refs):
            return t
    if subject is not None:
        return next((t for t in state.threads if t.subject == subject), None)
    recent = state.threads[0] if state.threads else None
    if recent is None or (refs and recent.refs):  # a reference the recent thread does not have
        return None
    if recent.open and at - recent.last_activity_at > rules.continue_window_ms:
        return None
    return recent


def _business_message(state: CustomerThreads, msg: dict[str, Any]) -> tuple[CustomerThreads, list[dict[str, Any]]]:
    at = msg["envelope"]["occurred_at"]
    thread = state.get(msg["thread_id"]) if msg.get("thread_id") else None
    if msg.get("thread_id") and thread is None:
        return state, [msg]  # a thread this state does not hold (e.g. before a merge): pass it on
    out: list[dict[str, Any]] = []
    if thread is None:
        thread = next((t for t in state.threads if t.open), state.threads[0] if state.threads else None)
    if thread is None:  # the business starts the conversation (outbound-first)
        thread = Thread(derive_id(msg["envelope"]["tenant_id"], msg["customer_id"], "thread",
                                  msg["envelope"]["event_id"]), at, at)
        out.append(_started(msg, thread, None))
    replied = msg.get("author_type") in BUSINESS_REPLIES
    thread = _touch(thread, at, business=replied)
    return _put(state, thread), [*out, {**msg, "thread_id": thread.thread_id}]


def _resolve(state: CustomerThreads, cmd: dict[str, Any]) -> tuple[CustomerThreads, list[dict[str, Any]]]:
    thread = state.get(cmd["thread_id"])
    if thread is None or not thread.open:
        return state, []
    at = cmd["envelope"]["occurred_at"]
    return _put(state, replace(thread, resolved_at=at), front=False), [cmd]


def _timeouts(state: CustomerThreads, now: int, tenant: str, customer: str,
              rules: Rules) -> tuple[CustomerThreads, list[dict[str, Any]]]:
    """Resolve threads where the business had the last word and the customer went silent."""
    if not rules.auto_resolve_after_ms:
        return state, []
    out = []
    for t in state.threads:
        last = t.last_business_at
        if not t.open or last is None or (t.last_customer_at or 0) > last:
            continue
        deadline = last + rules.auto_resolve_after_ms
        if now >= deadline:
            state = _put(state, replace(t, resolved_at=deadline), front=False)
            out.append(_timed_out(tenant, customer, t, deadline))
    return state, out


# --- events ----------------------------------------------------------------------------------

def _event(cause: dict[str, Any], kind: str, thread_id: str, **fields: Any) -> dict[str, Any]:
    env = caused_by(cause, kind, id_suffix=thread_id, producer=PRODUCER)
    return make(kind, env, thread_id=thread_id, customer_id=cause["customer_id"],
                channel=cause.get("channel"), **fields)


def _started(msg: dict[str, Any], thread: Thread, subject: str | None) -> dict[str, Any]:
    clean = _PREFIX.sub("", subject).strip() if subject else None
    return _event(msg, "ConversationStarted", thread.thread_id, subject=clean or None,
                  first_message_event_id=msg["envelope"]["event_id"])


def _timed_out(tenant: str, customer: str, thread: Thread, deadline: int) -> dict[str, Any]:
    """The timeout of a thread: named by the thread and its deadline only, whichever event or
    timer noticed it (its own correlation: the thread)."""
    env = envelope("ConversationResolved", event_id=derive_id(thread.thread_id, "timeout", deadline),
                   occurred_at=deadline, tenant_id=tenant, partition_key=topics.CONVERSATIONS.key(tenant, customer),
                   correlation_id=thread.thread_id, producer=PRODUCER)
    return make("ConversationResolved", env, thread_id=thread.thread_id, customer_id=customer, channel=None,
                resolved_by="timeout")


# --- state helpers ---------------------------------------------------------------------------

def _touch(t: Thread, at: int, *, customer: bool = False, business: bool = False, refs: Sequence[str] = (),
           subject: str | None = None) -> Thread:
    return replace(
        t,
        last_activity_at=max(t.last_activity_at, at),
        last_customer_at=max(t.last_customer_at or 0, at) if customer else t.last_customer_at,
        last_business_at=max(t.last_business_at or 0, at) if business else t.last_business_at,
        refs=t.refs + tuple(r for r in refs if r not in t.refs),
        subject=t.subject or subject,
    )


def _put(state: CustomerThreads, thread: Thread, front: bool = True) -> CustomerThreads:
    """Store ``thread``: first if it was just active, else in place; drop the oldest resolved."""
    others = [t for t in state.threads if t.thread_id != thread.thread_id]
    if front:
        threads = [thread, *others]
    else:
        threads = [thread if t.thread_id == thread.thread_id else t for t in state.threads]
    while len(threads) > MAX_THREADS:
        oldest_resolved = next((t for t in reversed(threads) if not t.open), threads[-1])
        threads.remove(oldest_resolved)
    return replace(state, threads=tuple(threads))


def customer_key_of(event: Mapping[str, Any]) -> str:
    """The state key of an input event: its topic's key, tenant|customer (its partition key when
    it names no customer)."""
    return topics.CONVERSATION_MESSAGES.key(event["envelope"]["tenant_id"], event["customer_id"]) \
        if event.get("customer_id") else event["envelope"]["partition_key"]
