"""The streaming KPI state: thread measures and presence in, changed figures out as KPI events.

Where it runs: the ``kpi`` stage (``streams.kpi.agents``, one tenant's state per task). It takes
each thread's *measure* (``measure()``: episodes, assignment spans, message counters, latest time,
version), computed by the conversations stage where the thread's events are, and agent presence
(``AgentStatusChanged``); it produces ``ContactMeasured``, ``IntervalStat`` and
``AgentIntervalStat`` dicts (``schemas.events.make``). ``apply(event)`` also takes conversation
events directly, measuring their threads here (one process: tests, the batch comparison). The
arithmetic lives in ``logic``; this module keeps the state and decides what to recompute.

State: ``streams.kpi.state`` (the stores, their values and their changelog codecs).

Idempotency: a measure already applied (same or older version) changes nothing, and a repeated
presence event id is recognised, so counters and figures cannot double.

Watermark: the largest event time seen for the tenant. It is the "as of" time of SL(T) (a contact
still waiting longer than T) and the end of open presence and assignments. When it advances, what
can change is marked: intervals with contacts started in ``(wm_before - 300 s, wm]``, and the
intervals of agents online in between (on crossing an interval boundary in ``apply``, and for the
current interval at each flush).

Emission: ``apply`` only marks what changed; ``flush`` (once per transaction in the worker)
recomputes the marked contacts, agent-intervals and intervals (each bounded by its own size) and
returns the records whose content changed; while records keep coming, an open interval is
recomputed at most once per ``REFRESH_MS`` of event time, longer for a large one
(``flush(defer=True)``). Event ids derive from the key, the as-of time and a digest of the
content, so a replay of the same log emits the same ids; the correlation id is the triggering
event's, the causation id its event id. A key that no longer has data is published
once more, empty: a ``ContactMeasured`` with status ``void`` (a contact superseded by a late
event), an ``IntervalStat`` with no metrics (e.g. a queue the contact left when its routing
arrived), an ``AgentIntervalStat`` with ``online_ms == 0`` (an offline event arrived late).

Memory only: the marks not yet flushed (flushed in the same transaction as the state changes),
the digests last published (a restarted worker may publish identical figures again: harmless on
compacted topics), cached agent figures and the ``members`` store indexed by interval (rebuilt
from the store by a restarted worker). The watermark of the last flush is written with the
tenant's state, so the first flush of a worker re-marks everything since its predecessor's last
flush.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from schemas import topics
from schemas.events import derive_id, envelope, make
from schemas.keys import SEP, scoped
from streams.kpi import logic
from streams.kpi.arithmetic import INTERVAL_MS
from streams.kpi.logic import MAX_SL_MS, bucket, buckets_between
from streams.kpi.state import (
    AgentState,
    Cause,
    IntervalState,
    Measure,
    Span,
    Stores,
    Summary,
    TenantState,
    ThreadState,
    measure,
)

PRODUCER = "streams/kpi"
# While records flow, an open interval of n contacts is recomputed at most once per
# REFRESH_MS * max(1, n // REFRESH_CONTACTS) of event time: about REFRESH_CONTACTS contacts'
# worth of work per second, whatever the interval's size
REFRESH_MS = 1_000
REFRESH_CONTACTS = 2_000


class KpiEngine:
    """Order-insensitive, idempotent KPI state over ``Stores``."""

    def __init__(self, stores: Stores | None = None, producer: str = PRODUCER) -> None:
        self.stores = stores or Stores()
        self.producer = producer
        self._touched: dict[str, Cause] = {}  # tenant -> the last cause since the last flush
        self._recovered: dict[str, bool] = {}  # tenant -> had state before this worker
        self._presence_touched: dict[str, dict[str, None]] = {}  # tenant -> agents, this flush
        self._dirty_contacts: dict[tuple[str, str, str], Cause] = {}  # (tenant, thread, contact)
        self._dirty_agents: dict[tuple[str, str, int], Cause] = {}  # (tenant, agent, interval)
        self._dirty_buckets: dict[tuple[str, int], Cause] = {}  # (tenant, interval)
        self._flushed_at: dict[str, int] = {}  # tenant -> watermark of this worker's last flush
        self._refreshed: dict[tuple[str, int], int] = {}  # open interval -> watermark when last recomputed
        self._agent_figures: dict[tuple[str, str, int], dict] = {}  # (tenant, agent, interval)
        self._published: dict[str, str] = {}  # output key -> digest of its last content
        # tenant|interval -> {episode id: thread}: the ``members`` store indexed by interval
        # (built at first use, from the store a predecessor left)
        self._members: dict[str, dict[str, str]] | None = None
        # one-process use: tenant|thread -> {event id: compact event}
        self._thread_events: dict[str, dict[str, list[Any]]] = {}

    @property
    def pending(self) -> int:
        """How many marks wait for the next flush."""
        return len(self._dirty_contacts) + len(self._dirty_agents) + len(self._dirty_buckets)

    # --- apply -----------------------------------------------------------------------------

    def apply(self, event: Mapping[str, Any]) -> bool:
        """Take one event into the state; False if it is not a KPI input or a repeat."""
        env = event["envelope"]
        etype = env["event_type"]
        if etype not in logic.KPI_TYPES:
            return False
        tenant = env["tenant_id"]
        cause = (env["event_id"], env["correlation_id"])
        self._touched[tenant] = cause
        if tenant not in self._recovered:  # state from an earlier worker: it may have published
            self._recovered[tenant] = tenant in self.stores.tenants
        wm = self._advance(tenant, env["occurred_at"], cause)
        if etype == logic.AGENT_STATUS:
            return self._apply_presence(tenant, event, wm, cause)
        return self._apply_conversation(tenant, event, wm, cause)

    def _tenant(self, tenant: str) -> TenantState:
        return self.stores.tenants.get(tenant) or TenantState()

    def _advance(self, tenant: str, t: int, cause: Cause) -> int:
        ts = self._tenant(tenant)
        if t > ts.watermark:
            if ts.watermark and bucket(t) > bucket(ts.watermark):  # online agents enter new intervals
                for agent in ts.online:
                    for b in buckets_between(ts.watermark, t):
                        self._mark_agent(tenant, agent, b, cause)
            ts.watermark = t
            ts.first_at = t if ts.first_at is None else ts.first_at
            ts.flushed_at = self._flushed_at.get(tenant, ts.flushed_at)
            self.stores.tenants[tenant] = ts
        return ts.watermark

    def _apply_conversation(self, tenant: str, event: Mapping[str, Any], wm: int, cause: Cause) -> bool:
        """One-process use (tests, the batch comparison): keep the thread's event set here and
        apply its measure. The worker measures a thread where its events are (the
        conversations stage, per customer) and sends the measure to ``apply_measure``."""
        item = logic.compact(event)
        if item is None:  # a watermark-only type
            return True
        thread = logic.thread_of(event)
        items = self._thread_events.setdefault(scoped(tenant, thread), {})
        event_id = event["envelope"]["event_id"]
        if event_id in items:
            return False
        items[event_id] = item
        self.apply_measure(tenant, thread, measure(tenant, thread, items.values()), cause)
        return True

    def apply_measure(self, tenant: str, thread: str, m: Measure, cause: Cause) -> None:
        """Take a thread's latest measure: what changed since the last one is re-indexed and
        marked. Idempotent: the same measure again changes nothing."""
        self._touched[tenant] = cause
        if tenant not in self._recovered:
            self._recovered[tenant] = tenant in self.stores.tenants
        wm = self._advance(tenant, m.latest, cause)
        tkey = scoped(tenant, thread)
        st = self.stores.threads.get(tkey) or ThreadState()
        if m.version <= st.version:
            return  # this measure or a newer one was applied: arrival order does not matter
        st.version = m.version
        episodes, spans, counters = m.episodes, [list(x) for x in m.spans], m.counters
        if st.episodes == episodes and st.spans == spans and st.counters == counters:
            self.stores.threads[tkey] = st
            return
        self._diff_episodes(tenant, thread, st, episodes, cause)
        self._diff_spans(tenant, st.spans, spans, wm, cause)
        self._diff_counts(tenant, st.counters, counters, cause)
        st.episodes, st.spans, st.counters = episodes, spans, counters
        self.stores.threads[tkey] = st

    def _diff_counts(self, tenant: str, old: Mapping[str, int], new: Mapping[str, int], cause: Cause) -> None:
        """Add what a thread's message counters changed by to its intervals' counters."""
        for key in sorted(set(old) | set(new)):
            delta = new.get(key, 0) - old.get(key, 0)
            if not delta:
                continue
            b, name = key.split("|", 1)
            bkey = scoped(tenant, b)
            interval = self.stores.buckets.get(bkey) or IntervalState()
            n = interval.messages.get(name, 0) + delta
            if n:
                interval.messages[name] = n
            else:
                interval.messages.pop(name, None)
            self.stores.buckets[bkey] = interval
            self._dirty_buckets[(tenant, int(b))] = cause

    def _diff_episodes(self, tenant: str, thread: str, st: ThreadState, new: dict[str, Summary],
                       cause: Cause) -> None:
        old = st.episodes
        for ep_id, ep in new.items():
            before = old.get(ep_id)
            if before == ep:
                continue
            b = bucket(ep["start"])
            if before is None or bucket(before["start"]) != b:
                if before is not None:
                    self._index(tenant, bucket(before["start"]), ep_id, None, cause)
                self._index(tenant, b, ep_id, thread, cause)
            self._note_keys(tenant, b, logic.episode_keys(ep))
            if ep["contact"] or (before and before["contact"]):
                self._dirty_contacts[(tenant, thread, ep_id)] = cause
            if before and before["contact"] and not ep["contact"]:
                st.voided[ep_id] = before
            elif ep["contact"]:
                st.voided.pop(ep_id, None)
            self._dirty_buckets[(tenant, b)] = cause
        for ep_id, before in old.items():
            if ep_id not in new:
                self._index(tenant, bucket(before["start"]), ep_id, None, cause)
                if before["contact"]:
                    st.voided[ep_id] = before
                    self._dirty_contacts[(tenant, thread, ep_id)] = cause

    def _mark_agent(self, tenant: str, agent: str, b: int, cause: Cause) -> None:
        """Recompute the agent-interval at the next flush; its interval may get team figures."""
        self._dirty_agents[(tenant, agent, b)] = cause
        self._note_keys(tenant, b, [logic.OVERALL])

    def _note_keys(self, tenant: str, b: int, keys: list[tuple[str, str]]) -> None:
        """Remember every key an interval ever had, to publish it empty once it has no data."""
        bkey = scoped(tenant, b)
        interval = self.stores.buckets.get(bkey) or IntervalState()
        if not interval.keys.issuperset(keys):
            interval.keys.update(keys)
            self.stores.buckets[bkey] = interval

    def _index(self, tenant: str, b: int, ep_id: str, thread: str | None, cause: Cause) -> None:
        """Add (thread given) or remove an episode from its interval's membership: one small
        ``members`` record, whatever the interval's size."""
        self._member(tenant, b, ep_id, thread)
        self._dirty_buckets[(tenant, b)] = cause

    def _member(self, tenant: str, b: int, ep_id: str, thread: str | None) -> None:
        index, bkey, key = self._member_index(), scoped(tenant, b), scoped(tenant, b, ep_id)
        if thread is None:
            self.stores.members.pop(key, None)
            members = index.get(bkey)
            if members is not None:
                members.pop(ep_id, None)
                if not members:
                    del index[bkey]
        else:
            self.stores.members[key] = thread
            index.setdefault(bkey, {})[ep_id] = thread

    def _episodes_of(self, tenant: str, b: int) -> dict[str, str]:
        """The episodes that started in an interval: episode id -> thread."""
        return self._member_index().get(scoped(tenant, b)) or {}

    def _member_index(self) -> dict[str, dict[str, str]]:
        """``members`` by interval, built once; intervals a worker wrote before ``members``
        existed (their episodes inside the ``buckets`` value) are moved into it on the way."""
        if self._members is None:
            index: dict[str, dict[str, str]] = {}
            for key, thread in self.stores.members.items():
                bkey, ep_id = key.rsplit(SEP, 1)  # tenant|interval, episode (an id without SEP)
                index.setdefault(bkey, {})[ep_id] = thread
            self._members = index
            legacy = [(k, v) for k, v in self.stores.buckets.items() if v.legacy_episodes]
            for bkey, interval in legacy:
                tenant, b = bkey.rsplit(SEP, 1)
                for ep_id, thread in interval.legacy_episodes.items():
                    self._member(tenant, int(b), ep_id, thread)
                interval.legacy_episodes = {}
                self.stores.buckets[bkey] = interval
        return self._members

    def _diff_spans(self, tenant: str, old: list[Span], new: list[Span], wm: int, cause: Cause) -> None:
        before, after = {tuple(s) for s in old}, {tuple(s) for s in new}
        for span in sorted(before - after, key=repr):  # removals first: a span may be replaced
            self._span(tenant, span, False, wm, cause)
        for span in sorted(after - before, key=repr):
            self._span(tenant, span, True, wm, cause)

    def _span(self, tenant: str, span: tuple, add: bool, wm: int, cause: Cause) -> None:
        sid, agent, start, end = span
        if end is None:
            akey = scoped(tenant, agent)
            a = self.stores.agents.get(akey) or AgentState()
            if add:
                a.open_spans[sid] = start
            else:
                a.open_spans.pop(sid, None)
            self.stores.agents[akey] = a
            marked: Any = buckets_between(start, max(start, wm))
        else:
            marked = logic.span_pieces(start, end)
            for b, piece in marked.items():
                self._piece(scoped(tenant, agent, b), sid, piece if add else None)
        for b in marked:
            self._mark_agent(tenant, agent, b, cause)

    def _piece(self, key: str, sid: str, piece: list[int] | None) -> None:
        p = self.stores.pieces.get(key) or {}
        if piece is None:
            p.pop(sid, None)
        else:
            p[sid] = piece
        if p:
            self.stores.pieces[key] = p
        elif key in self.stores.pieces:
            del self.stores.pieces[key]

    def _apply_presence(self, tenant: str, event: Mapping[str, Any], wm: int, cause: Cause) -> bool:
        env, agent = event["envelope"], event["agent_id"]
        akey = scoped(tenant, agent)
        a = self.stores.agents.get(akey) or AgentState()
        presence, t, eid = a.presence, env["occurred_at"], env["event_id"]
        i = bisect.bisect_left(presence, [t, eid])  # entries sort by (occurred_at, event_id)
        repeat = i < len(presence) and presence[i][:2] == [t, eid]
        if not repeat:
            presence.insert(i, [t, eid, 1 if event["presence"] == "online" else 0])
        until = presence[i + 1][0] if i + 1 < len(presence) else wm  # the next status' time
        for b in buckets_between(t, until):  # the presence function changed on [t, until)
            self._mark_agent(tenant, agent, b, cause)
        if repeat:
            return False
        self.stores.agents[akey] = a
        ts = self._tenant(tenant)
        _, _, online_now = presence[-1]
        online = [x for x in ts.online if x != agent] + ([agent] if online_now else [])
        if agent not in ts.agents or online != ts.online:
            ts.agents = ts.agents + ([] if agent in ts.agents else [agent])
            ts.online = online
            self.stores.tenants[tenant] = ts
        self._presence_touched.setdefault(tenant, {})[agent] = None
        return True

    # --- flush -----------------------------------------------------------------------------

    def flush(self, defer: bool = False) -> list[dict[str, Any]]:
        """Recompute what was marked since the last flush; the KPI records that changed.

        ``defer`` (the stage, while records keep coming): an interval of a tenant that had
        records since the last flush, still open to change by the passing of time (its end less
        than 300 s, the longest SL target, behind the watermark), that was recomputed less than
        ``REFRESH_MS * max(1, n // REFRESH_CONTACTS)`` of event time ago (n: its contacts) stays
        marked for a later flush. An interval's figures are computed from all its contacts, so
        recomputing the current one at every transaction made the stage's cost grow with the
        interval (a third of the worker after 50 s at 1,000 messages/s). Its figures lag by that
        much event time while the tenant's traffic flows, and are exact at the first flush after
        its records stop (a tenant that goes quiet is not held back by others on the same task),
        at the first flush without ``defer`` (a turn without input) and once the interval
        closes. A restarted worker re-marks every interval from its predecessor's last flush,
        which covers the deferred ones (they are all still open)."""
        for tenant, cause in self._touched.items():
            self._mark_watermark(tenant, cause)
        flowing = set(self._touched) if defer else set()  # tenants whose records keep coming
        self._touched, self._presence_touched = {}, {}
        out: list[dict[str, Any]] = []
        agents, self._dirty_agents = self._dirty_agents, {}
        for agent_key, cause in sorted(agents.items()):
            out.extend(self._flush_agent(agent_key, cause))
        contacts, self._dirty_contacts = self._dirty_contacts, {}
        for contact_key, cause in sorted(contacts.items()):
            out.extend(self._flush_contact(contact_key, cause))
        intervals, self._dirty_buckets = self._dirty_buckets, {}
        for bucket_key, cause in sorted(intervals.items()):
            if bucket_key[0] in flowing and self._may_wait(bucket_key):
                self._dirty_buckets[bucket_key] = cause  # still marked: a later flush does it
                continue
            out.extend(self._flush_interval(bucket_key, cause))
        return out

    def _may_wait(self, key: tuple[str, int]) -> bool:
        """Whether an interval's recomputation may wait (see ``flush``); notes it if not."""
        tenant, b = key
        wm = self._tenant(tenant).watermark
        if b + INTERVAL_MS <= wm - MAX_SL_MS:  # closed: its figures are final now
            self._refreshed.pop(key, None)
            return False
        last = self._refreshed.get(key)
        if last is not None:
            size = len(self._episodes_of(tenant, b))
            if wm - last < REFRESH_MS * max(1, size // REFRESH_CONTACTS):
                return True
        self._refreshed[key] = wm
        return False

    def _mark_watermark(self, tenant: str, cause: Cause) -> None:
        ts = self._tenant(tenant)
        wm, prev = ts.watermark, self._flushed_at.get(tenant)
        agents = list(ts.online) + list(self._presence_touched.get(tenant, ()))
        if prev is None:  # first flush of this worker: from its predecessor's last flush on
            prev = ts.flushed_at if ts.flushed_at is not None else ts.first_at
            agents = ts.agents
        if prev is None:  # no event of the tenant yet: nothing to mark
            return
        if wm > prev:
            for b in buckets_between(prev - MAX_SL_MS, wm):
                self._dirty_buckets.setdefault((tenant, b), cause)
            for agent in agents:
                for b in buckets_between(prev, wm):
                    self._dirty_agents.setdefault((tenant, agent, b), cause)
        self._flushed_at[tenant] = wm

    def _agent(self, tenant: str, agent: str, b: int, fresh: bool = False) -> dict[str, Any]:
        key = (tenant, agent, b)
        if fresh or key not in self._agent_figures:
            self._agent_figures[key] = self._compute_agent(tenant, agent, b)
        return self._agent_figures[key]

    def _compute_agent(self, tenant: str, agent: str, b: int) -> dict[str, Any]:
        end = min(b + INTERVAL_MS, self._tenant(tenant).watermark)
        a = self.stores.agents.get(scoped(tenant, agent))
        online = logic.online_segments(a.presence, b, end) if a and end > b else []
        if a is None or not online:
            return logic.agent_figures([], [])
        closed = (self.stores.pieces.get(scoped(tenant, agent, b)) or {}).values()
        pieces = [(lo, min(hi, end)) for lo, hi in closed if lo < end]
        pieces += [(max(f, b), end) for f in a.open_spans.values() if f < end]
        return logic.agent_figures(online, pieces)

    def _flush_agent(self, key: tuple[str, str, int], cause: Cause) -> list[dict]:
        tenant, agent, b = key
        before = self._agent_figures.get(key)
        figs = self._agent(tenant, agent, b, fresh=True)
        if figs != before:
            self._dirty_buckets.setdefault((tenant, b), cause)
        okey = topics.KPI_INTERVALS.key(tenant, b, "agent_status", agent)
        if figs["online_ms"] == 0 and okey not in self._published and not self._recovered.get(tenant):
            return []  # never published (by this worker, nor by one before it)
        rec = self._record(
            "AgentIntervalStat", tenant, okey, self._tenant(tenant).watermark, cause,
            agent_id=agent, interval_start=b, online_ms=figs["online_ms"],
            open_conversation_ms=figs["open_ms"], idle_ms=figs["idle_ms"],
            peak_concurrency=figs["peak"], time_at_level_ms=figs["levels"],
            definition_version=logic.DEFINITION_VERSION,
        )
        return [rec] if rec else []

    def _flush_contact(self, key: tuple[str, str, str], cause: Cause) -> list[dict]:
        tenant, thread, ep_id = key
        st = self.stores.threads.get(scoped(tenant, thread)) or ThreadState()
        ep, status = st.episodes.get(ep_id), None
        if ep is None or not ep["contact"]:
            ep, status = st.voided.get(ep_id), "void"
            if ep is None:
                return []
        fields = logic.contact_fields(ep)
        if status:
            fields["status"] = status
        rec = self._record("ContactMeasured", tenant, topics.KPI_CONTACTS.key(tenant, ep_id), ep["last_at"], cause,
                           contact_id=ep_id, **fields)
        return [rec] if rec else []

    def _flush_interval(self, key: tuple[str, int], cause: Cause) -> list[dict]:
        tenant, b = key
        ts = self._tenant(tenant)
        interval = self.stores.buckets.get(scoped(tenant, b)) or IntervalState()
        eps = []
        for ep_id, thread in sorted(self._episodes_of(tenant, b).items()):  # an order of its own: replays agree
            st = self.stores.threads.get(scoped(tenant, thread))
            ep = st.episodes.get(ep_id) if st is not None else None
            if ep is not None:
                eps.append(ep)
        team = [self._agent(tenant, agent, b) for agent in ts.agents]
        metrics = logic.interval_metrics(eps, interval.messages, team, ts.watermark)
        gone = interval.keys - set(metrics)
        out = []
        for dim, value in sorted(metrics) + sorted(gone):
            rec = self._record(
                "IntervalStat", tenant, topics.KPI_INTERVALS.key(tenant, b, dim, value), ts.watermark, cause,
                interval_start=b, dimension=dim, dimension_value=value,
                metrics=metrics.get((dim, value), {}),
                definition_version=logic.DEFINITION_VERSION,
            )
            if rec:
                out.append(rec)
        return out

    def _record(self, etype: str, tenant: str, key: str, as_of: int, cause: Cause,
                **fields: Any) -> dict[str, Any] | None:
        """The record, or None when the key's content did not change since it was published."""
        digest = hashlib.blake2b(json.dumps(fields, sort_keys=True).encode(),
                                 digest_size=16).hexdigest()
        if self._published.get(key) == digest:
            return None
        self._published[key] = digest
        env = envelope(etype, event_id=derive_id(etype, key, as_of, digest), occurred_at=as_of,
                       tenant_id=tenant, partition_key=key, correlation_id=cause[1],
                       causation_id=cause[0], producer=self.producer)
        return make(etype, env, **fields)
