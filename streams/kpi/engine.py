"""The streaming KPI state: thread measures and presence in, changed figures out as KPI events.

Where it runs: the ``kpi`` stage (``streams.kpi.agents``, one tenant's state per task). It takes
each thread's *measure* (``measure()``: episodes, assignment spans, message counters, latest time,
version), computed by the conversations stage where the thread's events are, and agent presence
(``AgentStatusChanged``); it produces ``ContactMeasured``, ``IntervalStat`` and
``AgentIntervalStat`` dicts (``schemas.events.make``). ``apply(event)`` also takes conversation
events directly, measuring their threads here (one process: tests, the batch comparison). The
arithmetic lives in ``logic``; this module keeps the state and decides what to recompute.

State (``Stores``: any ``MutableMapping``s; the stage's stores in the worker, dicts in tests).
Values are JSON-shaped and written back by assignment (a store writes a changelog record on
``__setitem__`` only):

* ``threads``  ``tenant|thread`` -> ``{"eps": {episode_id: summary}, "spans": [[span_id, agent,
  from, to|None]], "n": {counter: n}, "v": version, "void": {...}, "bk": [...], "ag": {...}}``:
  the thread's latest measure (a measure older than ``v`` is ignored, so measures may arrive in
  any order), ``void`` the last measure of contacts a late event superseded, ``bk`` the intervals
  its episodes ever started in, ``ag`` each agent's earliest span start.
* ``buckets``  ``tenant|interval`` -> ``{"eps": {episode_id: thread}, "msg": {counter: n},
  "dk": [[dimension, value]]}``: the episodes that started in the interval, the message and
  sentiment counters of the interval (sums over its threads' counters), and every key the
  interval ever had.
* ``agents``   ``tenant|agent`` -> ``{"p": [[t, event_id, online]] sorted, "open": {span_id: from}}``.
* ``pieces``   ``tenant|agent|interval`` -> ``{span_id: [lo, hi]}``: closed assignment spans cut at
  interval boundaries, so an agent-interval is recomputed from its own pieces only.
* ``tenants``  ``tenant`` -> ``{"wm": watermark, "agents": [...], "online": [...]}``.

Idempotency: a measure already applied (same or older version) changes nothing, and a repeated
presence event id is recognised, so counters and figures cannot double.

Watermark: the largest event time seen for the tenant. It is the "as of" time of SL(T) (a contact
still waiting longer than T) and the end of open presence and assignments. When it advances, what
can change is marked: intervals with contacts started in ``(wm_before - 300 s, wm]``, and the
intervals of agents online in between (on crossing an interval boundary in ``apply``, and for the
current interval at each flush).

Emission: ``apply`` only marks what changed; ``flush`` (once per transaction in the worker)
recomputes the marked contacts, agent-intervals and intervals (each bounded by its own size) and
returns the records whose content changed. Event ids derive from the key, the as-of time and a
digest of the content, so a replay of the same log emits the same ids; the correlation id is the
triggering event's, the causation id its event id. A key that no longer has data is published
once more, empty: a ``ContactMeasured`` with status ``void`` (a contact superseded by a late
event), an ``IntervalStat`` with no metrics (e.g. a queue the contact left when its routing
arrived), an ``AgentIntervalStat`` with ``online_ms == 0`` (an offline event arrived late).

Memory only: the marks not yet flushed (flushed in the same transaction as the state changes),
the digests last published (a restarted worker may publish identical figures again: harmless on
compacted topics) and cached agent figures. The watermark of the last flush is written with the
tenant's state, so the first flush of a worker re-marks everything since its predecessor's last
flush.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from schemas.events import derive_id, envelope, make
from streams.kpi import logic
from streams.kpi.logic import MAX_SL_MS, bucket, buckets_between

Cause = tuple[str, str]  # (event_id, correlation_id) of the event that triggered a change
PRODUCER = "streams/kpi"


@dataclass
class Stores:
    threads: MutableMapping[str, Any] = field(default_factory=dict)
    buckets: MutableMapping[str, Any] = field(default_factory=dict)
    agents: MutableMapping[str, Any] = field(default_factory=dict)
    pieces: MutableMapping[str, Any] = field(default_factory=dict)
    tenants: MutableMapping[str, Any] = field(default_factory=dict)


class KpiEngine:
    """Order-insensitive, idempotent KPI state over ``Stores``."""

    def __init__(self, stores: Stores | None = None, producer: str = PRODUCER) -> None:
        self.s = stores or Stores()
        self.producer = producer
        self._touched: dict[str, Cause] = {}
        self._recovered: dict[str, bool] = {}
        self._presence_touched: dict[str, dict[str, None]] = {}
        self._dirty_contacts: dict[tuple[str, str, str], Cause] = {}
        self._dirty_agents: dict[tuple[str, str, int], Cause] = {}
        self._dirty_buckets: dict[tuple[str, int], Cause] = {}
        self._wm_flushed: dict[str, int] = {}
        self._agent_figs: dict[tuple[str, str, int], dict] = {}
        self._emitted: dict[str, str] = {}
        self._sets: dict[str, dict[str, list[Any]]] = {}  # one-process use: thread -> event set

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
            self._recovered[tenant] = tenant in self.s.tenants
        wm = self._advance(tenant, env["occurred_at"], cause)
        if etype == logic.AGENT_STATUS:
            return self._apply_presence(tenant, event, wm, cause)
        return self._apply_conversation(tenant, event, etype, wm, cause)

    def _tenant(self, tenant: str) -> dict[str, Any]:
        # wm: watermark; w0: first event time; wf: watermark of this worker's last flush (written
        # with the next advance, so a successor knows from where figures may be unpublished)
        return self.s.tenants.get(tenant) or {"wm": 0, "w0": None, "wf": None, "agents": [],
                                              "online": []}

    def _advance(self, tenant: str, t: int, cause: Cause) -> int:
        ts = self._tenant(tenant)
        if t > ts["wm"]:
            if ts["wm"] and bucket(t) > bucket(ts["wm"]):  # online agents enter new intervals
                for agent in ts["online"]:
                    for b in buckets_between(ts["wm"], t):
                        self._mark_agent(tenant, agent, b, cause)
            ts["wm"] = t
            ts["w0"] = t if ts["w0"] is None else ts["w0"]
            ts["wf"] = self._wm_flushed.get(tenant, ts["wf"])
            self.s.tenants[tenant] = ts
        return ts["wm"]

    def _apply_conversation(self, tenant: str, event: Mapping[str, Any], etype: str, wm: int,
                            cause: Cause) -> bool:
        """One-process use (tests, the batch comparison): keep the thread's event set here and
        apply its measure. The worker measures a thread where its events are (the
        conversations stage, per customer) and sends the measure to ``apply_measure``."""
        item = logic.compact(event)
        if item is None:  # a watermark-only type
            return True
        thread = logic.thread_of(event)
        items = self._sets.setdefault(f"{tenant}|{thread}", {})
        if item[2] in items:
            return False
        items[item[2]] = item
        self.apply_measure(tenant, thread, measure(tenant, thread, items.values()), cause)
        return True

    def apply_measure(self, tenant: str, thread: str, m: Mapping[str, Any], cause: Cause) -> None:
        """Take a thread's latest measure (``measure()``): what changed since the last one is
        re-indexed and marked. Idempotent: the same measure again changes nothing."""
        self._touched[tenant] = cause
        if tenant not in self._recovered:
            self._recovered[tenant] = tenant in self.s.tenants
        wm = self._advance(tenant, m["t"], cause)
        tkey = f"{tenant}|{thread}"
        st = self.s.threads.get(tkey) or _new_thread()
        version = list(m["v"])
        if version <= st["v"]:
            return  # this measure or a newer one was applied: arrival order does not matter
        st["v"] = version
        eps, spans, counts = m["eps"], [list(x) for x in m["spans"]], m["counts"]
        if st["eps"] == eps and st["spans"] == spans and st["n"] == counts:
            self.s.threads[tkey] = st
            return
        self._diff_episodes(tenant, thread, st, eps, cause)
        self._diff_spans(tenant, st["spans"], spans, wm, cause)
        for _, agent, start, end in st["spans"] + spans:  # an open span counted up to wm
            lo, hi = st["ag"].get(agent, (start, start))
            st["ag"][agent] = [min(lo, start), max(hi, wm if end is None else end)]
        self._diff_counts(tenant, st["n"], counts, cause)
        st["eps"], st["spans"], st["n"] = eps, spans, counts
        self.s.threads[tkey] = st

    def _diff_counts(self, tenant: str, old: Mapping[str, int], new: Mapping[str, int], cause: Cause) -> None:
        """Add what a thread's message counters changed by to its intervals' counters."""
        for key in sorted(set(old) | set(new)):
            delta = new.get(key, 0) - old.get(key, 0)
            if not delta:
                continue
            b, name = key.split("|", 1)
            bkey = f"{tenant}|{b}"
            v = self.s.buckets.get(bkey) or _new_bucket()
            n = v["msg"].get(name, 0) + delta
            if n:
                v["msg"][name] = n
            else:
                v["msg"].pop(name, None)
            self.s.buckets[bkey] = v
            self._dirty_buckets[(tenant, int(b))] = cause

    def _diff_episodes(self, tenant: str, thread: str, st: dict, new: dict, cause: Cause) -> None:
        old = st["eps"]
        for ep_id, ep in new.items():
            before = old.get(ep_id)
            if before == ep:
                continue
            b = bucket(ep["start"])
            if before is None or bucket(before["start"]) != b:
                if before is not None:
                    self._index(tenant, bucket(before["start"]), ep_id, None, cause)
                self._index(tenant, b, ep_id, thread, cause)
                st["bk"] = sorted(set(st["bk"]) | {b})
            self._note_keys(tenant, b, logic.episode_keys(ep))
            if ep["contact"] or (before and before["contact"]):
                self._dirty_contacts[(tenant, thread, ep_id)] = cause
            if before and before["contact"] and not ep["contact"]:
                st["void"][ep_id] = before
            elif ep["contact"]:
                st["void"].pop(ep_id, None)
            self._dirty_buckets[(tenant, b)] = cause
        for ep_id, before in old.items():
            if ep_id not in new:
                self._index(tenant, bucket(before["start"]), ep_id, None, cause)
                if before["contact"]:
                    st["void"][ep_id] = before
                    self._dirty_contacts[(tenant, thread, ep_id)] = cause

    def _mark_agent(self, tenant: str, agent: str, b: int, cause: Cause) -> None:
        """Recompute the agent-interval at the next flush; its interval may get team figures."""
        self._dirty_agents[(tenant, agent, b)] = cause
        self._note_keys(tenant, b, [logic.OVERALL])

    def _note_keys(self, tenant: str, b: int, keys: list[tuple[str, str]]) -> None:
        """Remember every key an interval ever had, to publish it empty once it has no data."""
        key = f"{tenant}|{b}"
        v = self.s.buckets.get(key) or _new_bucket()
        known = {tuple(k) for k in v["dk"]}
        if not known.issuperset(keys):
            v["dk"] = sorted(known.union(keys))
            self.s.buckets[key] = v

    def _index(self, tenant: str, b: int, ep_id: str, thread: str | None, cause: Cause) -> None:
        """Add (thread given) or remove an episode from its interval's membership."""
        key = f"{tenant}|{b}"
        v = self.s.buckets.get(key) or _new_bucket()
        if thread is None:
            v["eps"].pop(ep_id, None)
        else:
            v["eps"][ep_id] = thread
        self.s.buckets[key] = v
        self._dirty_buckets[(tenant, b)] = cause

    def _diff_spans(self, tenant: str, old: list, new: list, wm: int, cause: Cause) -> None:
        before, after = {tuple(s) for s in old}, {tuple(s) for s in new}
        for span in sorted(before - after, key=repr):  # removals first: a span may be replaced
            self._span(tenant, span, False, wm, cause)
        for span in sorted(after - before, key=repr):
            self._span(tenant, span, True, wm, cause)

    def _span(self, tenant: str, span: tuple, add: bool, wm: int, cause: Cause) -> None:
        sid, agent, start, end = span
        if end is None:
            akey = f"{tenant}|{agent}"
            a = self.s.agents.get(akey) or {"p": [], "open": {}}
            if add:
                a["open"][sid] = start
            else:
                a["open"].pop(sid, None)
            self.s.agents[akey] = a
            marked: Any = buckets_between(start, max(start, wm))
        else:
            marked = logic.span_pieces(start, end)
            for b, piece in marked.items():
                self._piece(f"{tenant}|{agent}|{b}", sid, piece if add else None)
        for b in marked:
            self._mark_agent(tenant, agent, b, cause)

    def _piece(self, key: str, sid: str, piece: list[int] | None) -> None:
        p = self.s.pieces.get(key) or {}
        if piece is None:
            p.pop(sid, None)
        else:
            p[sid] = piece
        if p:
            self.s.pieces[key] = p
        elif key in self.s.pieces:
            del self.s.pieces[key]

    def _apply_presence(self, tenant: str, event: Mapping[str, Any], wm: int, cause: Cause) -> bool:
        env, agent = event["envelope"], event["agent_id"]
        akey = f"{tenant}|{agent}"
        a = self.s.agents.get(akey) or {"p": [], "open": {}}
        t, eid = env["occurred_at"], env["event_id"]
        keys = [(p[0], p[1]) for p in a["p"]]
        i = bisect.bisect_left(keys, (t, eid))
        repeat = i < len(keys) and keys[i] == (t, eid)
        if not repeat:
            a["p"].insert(i, [t, eid, 1 if event["presence"] == "online" else 0])
        until = a["p"][i + 1][0] if i + 1 < len(a["p"]) else wm
        for b in buckets_between(t, until):  # the presence function changed on [t, until)
            self._mark_agent(tenant, agent, b, cause)
        if repeat:
            return False
        self.s.agents[akey] = a
        ts = self._tenant(tenant)
        online = [x for x in ts["online"] if x != agent] + ([agent] if a["p"][-1][2] else [])
        if agent not in ts["agents"] or online != ts["online"]:
            ts["agents"] = ts["agents"] + ([] if agent in ts["agents"] else [agent])
            ts["online"] = online
            self.s.tenants[tenant] = ts
        self._presence_touched.setdefault(tenant, {})[agent] = None
        return True

    # --- flush -----------------------------------------------------------------------------

    def flush(self) -> list[dict[str, Any]]:
        """Recompute what was marked since the last flush; the KPI records that changed."""
        for tenant, cause in self._touched.items():
            self._mark_watermark(tenant, cause)
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
            out.extend(self._flush_interval(bucket_key, cause))
        return out

    def _mark_watermark(self, tenant: str, cause: Cause) -> None:
        ts = self._tenant(tenant)
        wm, prev = ts["wm"], self._wm_flushed.get(tenant)
        agents = list(ts["online"]) + list(self._presence_touched.get(tenant, ()))
        if prev is None:  # first flush of this worker: from its predecessor's last flush on
            prev = ts["wf"] if ts["wf"] is not None else ts["w0"]
            agents = ts["agents"]
        if wm > prev:
            for b in buckets_between(prev - MAX_SL_MS, wm):
                self._dirty_buckets.setdefault((tenant, b), cause)
            for agent in agents:
                for b in buckets_between(prev, wm):
                    self._dirty_agents.setdefault((tenant, agent, b), cause)
        self._wm_flushed[tenant] = wm

    def _agent(self, tenant: str, agent: str, b: int, fresh: bool = False) -> dict[str, Any]:
        key = (tenant, agent, b)
        if fresh or key not in self._agent_figs:
            self._agent_figs[key] = self._compute_agent(tenant, agent, b)
        return self._agent_figs[key]

    def _compute_agent(self, tenant: str, agent: str, b: int) -> dict[str, Any]:
        end = min(b + logic.INTERVAL_MS, self._tenant(tenant)["wm"])
        a = self.s.agents.get(f"{tenant}|{agent}")
        online = logic.online_segments(a["p"], b, end) if a and end > b else []
        if a is None or not online:
            return logic.agent_figures([], [])
        closed = (self.s.pieces.get(f"{tenant}|{agent}|{b}") or {}).values()
        pieces = [(lo, min(hi, end)) for lo, hi in closed if lo < end]
        pieces += [(max(f, b), end) for f in a["open"].values() if f < end]
        return logic.agent_figures(online, pieces)

    def _flush_agent(self, key: tuple[str, str, int], cause: Cause) -> list[dict]:
        tenant, agent, b = key
        before = self._agent_figs.get(key)
        figs = self._agent(tenant, agent, b, fresh=True)
        if figs != before:
            self._dirty_buckets.setdefault((tenant, b), cause)
        okey = f"{tenant}|{b}|agent_status|{agent}"
        if figs["online_ms"] == 0 and okey not in self._emitted and not self._recovered.get(tenant):
            return []  # never published (by this worker, nor by one before it)
        rec = self._record(
            "AgentIntervalStat", tenant, okey, self._tenant(tenant)["wm"], cause,
            agent_id=agent, interval_start=b, online_ms=figs["online_ms"],
            open_conversation_ms=figs["open_ms"], idle_ms=figs["idle_ms"],
            peak_concurrency=figs["peak"], time_at_level_ms=figs["levels"],
            definition_version=logic.DEFINITION_VERSION,
        )
        return [rec] if rec else []

    def _flush_contact(self, key: tuple[str, str, str], cause: Cause) -> list[dict]:
        tenant, thread, ep_id = key
        st = self.s.threads.get(f"{tenant}|{thread}") or _new_thread()
        ep, status = st["eps"].get(ep_id), None
        if ep is None or not ep["contact"]:
            ep, status = st["void"].get(ep_id), "void"
            if ep is None:
                return []
        fields = logic.contact_fields(ep)
        if status:
            fields["status"] = status
        rec = self._record("ContactMeasured", tenant, f"{tenant}|{ep_id}", ep["last_at"], cause,
                           contact_id=ep_id, **fields)
        return [rec] if rec else []

    def _flush_interval(self, key: tuple[str, int], cause: Cause) -> list[dict]:
        tenant, b = key
        ts = self._tenant(tenant)
        v = self.s.buckets.get(f"{tenant}|{b}") or _new_bucket()
        eps = []
        for ep_id, thread in v["eps"].items():
            ep = (self.s.threads.get(f"{tenant}|{thread}") or {"eps": {}})["eps"].get(ep_id)
            if ep is not None:
                eps.append(ep)
        team = [self._agent(tenant, agent, b) for agent in ts["agents"]]
        metrics = logic.interval_metrics(eps, v["msg"], team, ts["wm"])
        gone = {tuple(k) for k in v["dk"]} - set(metrics)
        out = []
        for dim, value in sorted(metrics) + sorted(gone):
            rec = self._record(
                "IntervalStat", tenant, f"{tenant}|{b}|{dim}|{value}", ts["wm"], cause,
                interval_start=b, dimension=dim, dimension_value=value,
                metrics=metrics.get((dim, value), {}),
                definition_version=logic.DEFINITION_VERSION,
            )
            if rec:
                out.append(rec)
        return out

    def _record(self, etype: str, tenant: str, key: str, as_of: int, cause: Cause,
                **fields: Any) -> dict[str, Any] | None:
        """The record, or None when the key's content did not change since it was emitted."""
        digest = hashlib.blake2b(json.dumps(fields, sort_keys=True).encode(),
                                 digest_size=16).hexdigest()
        if self._emitted.get(key) == digest:
            return None
        self._emitted[key] = digest
        env = envelope(etype, event_id=derive_id(etype, key, as_of, digest), occurred_at=as_of,
                       tenant_id=tenant, partition_key=key, correlation_id=cause[1],
                       causation_id=cause[0], producer=self.producer)
        return make(etype, env, **fields)


def _new_bucket() -> dict[str, Any]:
    # eps: episode id -> thread; msg: counters; dk: every (dimension, value) it ever had
    return {"eps": {}, "msg": {}, "dk": []}


def _new_thread() -> dict[str, Any]:
    # eps/spans/n: the thread's latest measure; void: contacts that no longer exist (last
    # measure); bk: intervals its episodes ever started in; ag: agent -> earliest span start
    return {"eps": {}, "spans": [], "n": {}, "v": [-1, 0], "void": {}, "bk": [], "ag": {}}


def measure(tenant: str, thread: str, items: Iterable[list[Any]], latest: int = 0) -> dict[str, Any]:
    """A thread's KPI measure from its compact events (``logic.compact``): episodes, assignment
    spans, message counters per interval (``"interval|metric|dimension|value" -> n``), its
    latest event time (at least ``latest``) and a version: (events, latest time), which only
    grows as the thread's event set does, so the aggregate keeps the newest measure whatever
    order measures reach it in. A function of the event set only."""
    items = list(items)
    eps, spans = logic.measure_thread(tenant, thread, items)
    t = max([latest, *(i[0] for i in items)])
    return {"eps": eps, "spans": spans, "counts": counts(items), "t": t, "v": [len(items), t]}


def counts(items: Iterable[list[Any]]) -> dict[str, int]:
    """Messages in and out, and sentiment labels, per interval of their own time."""
    out: dict[str, int] = {}
    for item in items:
        rank = item[1]
        names: list[str] = []
        if rank == logic.R_RECEIVED:
            names += _dims("messages_in", item[3])
        elif rank == logic.R_SENT:
            names += _dims("messages_out", item[3])
            if item[4] in ("agent", "bot"):
                names += _dims(f"messages_out_{item[4]}", item[3])
            if item[4] == "agent" and item[5] is not None:
                names.append(f"messages_out|agent|{item[5]}")
        elif rank == logic.R_ENRICHED:
            names += _dims(f"sentiment_{item[4]}", item[5])
        b = bucket(item[0])
        for name in names:
            key = f"{b}|{name}"
            out[key] = out.get(key, 0) + 1
    return out


def _dims(metric: str, channel: str | None) -> list[str]:
    return [f"{metric}|overall|all", f"{metric}|channel|{channel or ''}"]
