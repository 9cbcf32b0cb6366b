"""KPIs recomputed in one pass over the raw event log, in DuckDB SQL.

An independent check of the streaming KPIs (``streams/kpi``): it shares no code with them, only
the event contract (``schemas``) and the definitions of ../shared/KPIS.md as the docstring of
``streams/kpi/logic.py`` pins them down. Where the streaming path keeps per-thread state and
re-measures a thread on each event, this one sorts the whole log once and answers with window
functions and joins; where the stream sweeps each agent-interval, this one cuts every agent's
day into elementary segments between all breakpoints and counts the spans covering each.

Definitions (version 2 of the streaming ones): nearest-rank percentiles (rank ``ceil(p n / 100)``);
SL(T) = within / (within + after + long abandons + still waiting over T), a long abandon being a
contact that ended with no human reply more than 30 s after its start (even before T), a short
abandon (at most 30 s) and a contact still waiting at most T being left out; bot containment
counts threads (contained: never routed to a human, and resolved at the end), each thread in the
interval, channel and queue of its first episode.

Input: decoded events (dicts as ``schemas.codec`` returns them), in any order, with repeats:
``compute(events)``; or a dump with one JSON event per line: ``python -m parley.app.batch.kpi_batch FILE``.
Output, the shape ``streams.kpi.logic.fold_outputs`` gives for the published KPI topics:
``{"contacts": {contact_id: fields}, "intervals": {(tenant, interval_start, dimension, value):
metrics}, "agents": {(tenant, agent_id, interval_start): figures}}``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import duckdb
import pyarrow as pa

from schemas.events import derive_id

INTERVAL = 900_000  # 15 minutes in ms; its own constant: this recomputation shares no code with the stream
SL = ((300, 90), (20, 80))  # (T seconds, target %)
THREAD_TYPES = ("MessageReceived", "MessageSent", "RoutingDecided", "ConversationAssigned",
                "ConversationTransferred", "ConversationResolved", "MessageEnriched")
CLOCK_TYPES = THREAD_TYPES + ("ConversationStarted", "ConversationReopened",
                              "ConversationQueued", "AgentStatusChanged")

_COLUMNS = ("tenant", "eid", "etype", "t", "thread_id", "customer", "channel", "author_type",
            "author_id", "target_kind", "queue", "agent", "presence", "label", "ref")


def _row(e: Mapping[str, Any]) -> tuple:
    env, kind = e["envelope"], e["envelope"]["event_type"]
    agent = e.get("to_agent_id") if kind == "ConversationTransferred" else e.get("agent_id")
    return (env["tenant_id"], env["event_id"], kind, env["occurred_at"], e.get("thread_id"),
            e.get("customer_id"), e.get("channel"), e.get("author_type"), e.get("author_id"),
            e.get("target_kind"), e.get("queue"), agent, e.get("presence"),
            e.get("sentiment_label"), e.get("message_event_id"))


def load(con: duckdb.DuckDBPyConnection, events: Iterable[Mapping[str, Any]]) -> None:
    rows = [_row(e) for e in events if e["envelope"]["event_type"] in CLOCK_TYPES]
    cols: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [[] for _ in _COLUMNS]
    types = {"t": pa.int64()}
    table = pa.table({c: pa.array(v, type=types.get(c, pa.string())) for c, v in zip(_COLUMNS, cols, strict=True)})
    con.register("raw", table)


SQL = f"""
CREATE TEMP TABLE e AS SELECT * FROM raw
  QUALIFY row_number() OVER (PARTITION BY tenant, eid ORDER BY t) = 1;
CREATE TEMP TABLE wm AS SELECT tenant, max(t) AS as_of FROM e GROUP BY tenant;

-- one thread's events in order; 'cut' = resolutions strictly before the event
CREATE TEMP TABLE ce AS
SELECT *, coalesce(nullif(thread_id, ''), '~' || coalesce(customer, '')) AS thread,
  CASE etype WHEN 'MessageReceived' THEN 2 WHEN 'MessageEnriched' THEN 3
    WHEN 'RoutingDecided' THEN 4 WHEN 'ConversationAssigned' THEN 6
    WHEN 'ConversationTransferred' THEN 7 WHEN 'MessageSent' THEN 8
    WHEN 'ConversationResolved' THEN 9 END AS rnk
FROM e WHERE etype IN {THREAD_TYPES};
CREATE TEMP TABLE ce2 AS
SELECT *, row_number() OVER (PARTITION BY tenant, thread ORDER BY t, rnk, eid) AS pos,
  coalesce(sum((etype = 'ConversationResolved')::INT) OVER (PARTITION BY tenant, thread
    ORDER BY t, rnk, eid ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS cut
FROM ce;
-- episode events: from the cut's first customer message on
CREATE TEMP TABLE epe AS
SELECT c.* FROM ce2 c JOIN (SELECT tenant, thread, cut, min(pos) AS p0 FROM ce2
  WHERE etype = 'MessageReceived' GROUP BY ALL) s USING (tenant, thread, cut)
WHERE c.pos >= s.p0;
CREATE TEMP TABLE lab AS
SELECT tenant, thread, ref, last(label ORDER BY t, rnk, eid) AS label
FROM ce WHERE etype = 'MessageEnriched' GROUP BY ALL;

CREATE TEMP TABLE gx AS
SELECT tenant, thread, cut, pos, t, author_id, etype = 'MessageSent' AS human,
  coalesce(sum((etype = 'MessageSent')::INT) OVER (PARTITION BY tenant, thread, cut
    ORDER BY pos ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS run
FROM epe WHERE etype = 'MessageReceived' OR (etype = 'MessageSent' AND author_type = 'agent');
CREATE TEMP TABLE gaps AS
SELECT r.tenant, r.thread, r.cut, r.t - min(c.t) AS gap, r.author_id AS agent
FROM gx r JOIN gx c ON c.tenant = r.tenant AND c.thread = r.thread AND c.cut = r.cut
  AND c.run = r.run AND NOT c.human
WHERE r.human GROUP BY r.tenant, r.thread, r.cut, r.pos, r.t, r.author_id;

CREATE TEMP TABLE ep0 AS
SELECT tenant, thread, cut,
  first(eid ORDER BY pos) FILTER (WHERE etype = 'MessageReceived') AS first_eid,
  first(t ORDER BY pos) FILTER (WHERE etype = 'MessageReceived') AS start,
  first(channel ORDER BY pos) FILTER (WHERE etype = 'MessageReceived') AS channel,
  first(customer ORDER BY pos) FILTER (WHERE etype = 'MessageReceived') AS customer,
  count(*) FILTER (WHERE etype = 'RoutingDecided' AND target_kind IN ('queue', 'agent')) > 0
    AS contact,
  first(queue ORDER BY pos) FILTER (WHERE etype = 'RoutingDecided'
    AND target_kind IN ('queue', 'agent')) AS human_queue,
  first(queue ORDER BY pos) FILTER (WHERE etype = 'RoutingDecided') AS any_queue,
  min(t) FILTER (WHERE etype = 'MessageSent' AND author_type = 'agent') AS human_at,
  first(author_id ORDER BY pos) FILTER (WHERE etype = 'MessageSent' AND author_type = 'agent')
    AS agent,
  min(t) FILTER (WHERE etype = 'MessageSent' AND author_type IN ('agent', 'bot')) AS reply_at,
  max(t) FILTER (WHERE etype = 'ConversationResolved') AS resolved_at,
  last(eid ORDER BY pos) FILTER (WHERE etype = 'MessageReceived') AS last_msg
FROM epe GROUP BY ALL;

-- bot containment counts threads: the first episode carries the thread
CREATE TEMP TABLE thr AS
SELECT tenant, thread, min(cut) AS first_cut,
  NOT bool_or(contact) AND arg_max(resolved_at IS NOT NULL, cut) AS contained
FROM ep0 GROUP BY ALL;

CREATE TEMP TABLE ep AS
SELECT p.*, w.as_of, l.label AS last_sentiment, p.start - p.start % {INTERVAL} AS bucket,
  p.cut = h.first_cut AS thread_first, p.cut = h.first_cut AND h.contained AS thread_contained,
  CASE WHEN p.contact THEN p.human_queue ELSE coalesce(p.any_queue, 'none') END AS q,
  p.human_at - p.start AS frt, p.reply_at - p.start AS first_reply,
  p.resolved_at - p.start AS resolution,
  (p.human_at IS NULL AND p.resolved_at IS NOT NULL AND p.resolved_at - p.start <= 30000)
    AS short,
  coalesce(g.n, 0) AS gap_n, coalesce(g.total, 0) AS gap_total, coalesce(g.mx, 0) AS gap_max,
  {", ".join(f'''CASE WHEN p.human_at IS NOT NULL THEN
      CASE WHEN p.human_at - p.start <= {t * 1000} THEN 'within' ELSE 'after' END
    WHEN p.resolved_at IS NOT NULL THEN
      CASE WHEN p.resolved_at - p.start <= 30000 THEN 'short' ELSE 'abandoned' END
    WHEN w.as_of - p.start > {t * 1000} THEN 'over'
    ELSE 'pending' END AS sl{t}''' for t, _ in SL)}
FROM ep0 p JOIN wm w USING (tenant)
JOIN thr h ON h.tenant = p.tenant AND h.thread = p.thread
LEFT JOIN lab l ON l.tenant = p.tenant AND l.thread = p.thread AND l.ref = p.last_msg
LEFT JOIN (SELECT tenant, thread, cut, count(*) AS n, sum(gap) AS total, max(gap) AS mx
           FROM gaps GROUP BY ALL) g
  ON g.tenant = p.tenant AND g.thread = p.thread AND g.cut = p.cut;

CREATE TEMP TABLE epd AS
SELECT *, 'overall' AS dim, 'all' AS val FROM ep
UNION ALL SELECT *, 'channel', coalesce(channel, '') FROM ep
UNION ALL SELECT *, 'queue', q FROM ep;
"""

AGENT_SQL = f"""
CREATE TEMP TABLE pres AS
SELECT tenant, agent, t AS s, lead(t) OVER (PARTITION BY tenant, agent ORDER BY t, eid) AS nxt,
  presence = 'online' AS online
FROM e WHERE etype = 'AgentStatusChanged';
CREATE TEMP TABLE onl AS
SELECT p.tenant, p.agent, p.s, coalesce(p.nxt, w.as_of) AS en
FROM pres p JOIN wm w USING (tenant) WHERE p.online AND coalesce(p.nxt, w.as_of) > p.s;
CREATE TEMP TABLE asg AS
SELECT * FROM (
  SELECT c.tenant, nullif(c.agent, '') AS agent, c.t AS s,
    coalesce(lead(c.t) OVER (PARTITION BY c.tenant, c.thread ORDER BY c.t, c.rnk, c.eid), w.as_of)
      AS en, c.etype
  FROM ce c JOIN wm w USING (tenant)
  WHERE c.etype IN ('ConversationAssigned', 'ConversationTransferred', 'ConversationResolved'))
WHERE etype <> 'ConversationResolved' AND agent IS NOT NULL AND en > s;
CREATE TEMP TABLE bp AS
SELECT DISTINCT tenant, agent, p FROM (
  SELECT tenant, agent, s AS p FROM onl UNION ALL SELECT tenant, agent, en FROM onl
  UNION ALL SELECT tenant, agent, s FROM asg UNION ALL SELECT tenant, agent, en FROM asg
  UNION ALL SELECT tenant, agent, unnest(range(s - s % {INTERVAL} + {INTERVAL}, en, {INTERVAL})) FROM onl);
CREATE TEMP TABLE seg AS
SELECT * FROM (SELECT tenant, agent, p AS a, lead(p) OVER (PARTITION BY tenant, agent ORDER BY p)
  AS b FROM bp) WHERE b IS NOT NULL;
CREATE TEMP TABLE oseg AS
SELECT DISTINCT s.tenant, s.agent, s.a, s.b FROM seg s JOIN onl o
  ON o.tenant = s.tenant AND o.agent = s.agent AND o.s <= s.a AND s.a < o.en;
CREATE TEMP TABLE lvl AS
SELECT o.tenant, o.agent, o.a - o.a % {INTERVAL} AS bucket, o.a, o.b, count(x.s) AS n
FROM oseg o LEFT JOIN asg x ON x.tenant = o.tenant AND x.agent = o.agent AND x.s <= o.a
  AND o.a < x.en
GROUP BY ALL;
"""


def compute(events: Iterable[Mapping[str, Any]]) -> dict[str, dict]:
    """Every KPI over the whole log (see the module docstring for the shape)."""
    con = duckdb.connect()
    load(con, events)
    con.execute(SQL)
    con.execute(AGENT_SQL)
    intervals: dict[tuple, dict[str, float]] = {}
    _contact_dims(con, intervals)
    _gap_dims(con, intervals)
    _agent_dims(con, intervals)
    _messages(con, intervals)
    agents = _agents(con)
    _team(agents, intervals)
    return {"contacts": _contacts(con), "intervals": intervals, "agents": agents}


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _pct(col: str, cond: str, p: int = 90) -> str:
    """Nearest rank: the ceil(p n / 100)-th smallest (DuckDB lists are 1-based)."""
    cond = f"({cond}) AND {col} IS NOT NULL"
    n = f"count({col}) FILTER (WHERE {cond})"
    return f"list_sort(list({col}) FILTER (WHERE {cond}))[({n} * {p} + 99) // 100]"


def _contact_dims(con: duckdb.DuckDBPyConnection, out: dict) -> None:
    sl_cols = ", ".join(
        f"count(*) FILTER (WHERE contact AND sl{t} = '{k}') AS sl{t}_{k}"
        for t, _ in SL for k in ("within", "after", "over", "pending"))
    rows = _rows(con, f"""
    SELECT tenant, bucket, dim, val, count(*) AS conversations,
      count(*) FILTER (WHERE thread_first) AS threads,
      count(*) FILTER (WHERE thread_contained) AS bot_contained,
      count(*) FILTER (WHERE contact) AS offered,
      count(*) FILTER (WHERE contact AND human_at IS NOT NULL) AS answered,
      count(*) FILTER (WHERE contact AND resolved_at IS NOT NULL) AS resolved,
      count(*) FILTER (WHERE contact AND resolved_at IS NOT NULL AND human_at IS NULL) AS abandoned,
      count(*) FILTER (WHERE contact AND short) AS short_abandoned,
      count(*) FILTER (WHERE contact AND sl300 = 'abandoned') AS long_abandoned,
      count(*) FILTER (WHERE contact AND human_at IS NULL AND resolved_at IS NULL) AS waiting,
      {sl_cols},
      count(frt) FILTER (WHERE contact) AS frt_n, sum(frt) FILTER (WHERE contact) AS frt_sum,
      max(frt) FILTER (WHERE contact) AS frt_max, {_pct('frt', 'contact')} AS frt_p90,
      {_pct('frt', 'contact', 50)} AS frt_p50,
      count(first_reply) FILTER (WHERE contact) AS fr_n,
      sum(first_reply) FILTER (WHERE contact) AS fr_sum,
      count(resolution) FILTER (WHERE contact) AS res_n,
      sum(resolution) FILTER (WHERE contact) AS res_sum,
      sum(gap_total) FILTER (WHERE contact) AS wait_total,
      count(last_sentiment) FILTER (WHERE contact) AS known,
      count(*) FILTER (WHERE contact AND last_sentiment = 'negative') AS negative
    FROM epd GROUP BY ALL""")
    for r in rows:
        m = out.setdefault((r["tenant"], r["bucket"], r["dim"], r["val"]), {})
        m["conversations"] = float(r["conversations"])
        m["threads"], m["bot_contained"] = float(r["threads"]), float(r["bot_contained"])
        if r["threads"]:
            m["bot_containment"] = r["bot_contained"] / r["threads"]
        if r["offered"]:
            _contact_metrics(m, r)


def _contact_metrics(m: dict, r: dict) -> None:
    for k in ("offered", "answered", "resolved", "abandoned", "short_abandoned",
              "long_abandoned", "waiting"):
        m[k] = float(r[k])
    for t, pct in SL:
        within, after, over = r[f"sl{t}_within"], r[f"sl{t}_after"], r[f"sl{t}_over"]
        m[f"answered_within_{t}"], m[f"answered_after_{t}"] = float(within), float(after)
        m[f"unanswered_over_{t}"] = float(over)
        m[f"unanswered_within_{t}"] = float(r[f"sl{t}_pending"])
        missed = after + over + r["long_abandoned"]
        if within + missed:
            m[f"sl_{t}"] = within / (within + missed)
            m[f"sl_{t}_met"] = float(within * 100 >= pct * (within + missed))
    m["frt_count"] = float(r["frt_n"])
    if r["frt_n"]:
        m["frt_mean_ms"] = int(r["frt_sum"]) / r["frt_n"]
        m["frt_max_ms"], m["frt_p90_ms"] = float(r["frt_max"]), float(r["frt_p90"])
        m["frt_p50_ms"] = float(r["frt_p50"])
    for name, n, total in (("first_reply", "fr_n", "fr_sum"), ("resolution", "res_n", "res_sum")):
        m[f"{name}_count"] = float(r[n])
        if r[n]:
            m[f"{name}_mean_ms"] = int(r[total]) / r[n]
    m["customer_wait_total_ms"] = float(r["wait_total"])
    m["customer_wait_mean_ms"] = int(r["wait_total"]) / r["offered"]
    m["last_sentiment_known"], m["last_negative"] = float(r["known"]), float(r["negative"])
    if r["known"]:
        m["last_negative_share"] = r["negative"] / r["known"]


def _gap_block(m: dict, r: dict) -> None:
    m["reply_gap_count"] = float(r["n"])
    if r["n"]:
        m["reply_gap_mean_ms"] = int(r["total"]) / r["n"]
        m["reply_gap_max_ms"], m["reply_gap_p90_ms"] = float(r["mx"]), float(r["p90"])


_GAP_AGG = f"count(g.gap) AS n, sum(g.gap) AS total, max(g.gap) AS mx, {_pct('g.gap', 'true')} AS p90"


def _gap_dims(con: duckdb.DuckDBPyConnection, out: dict) -> None:
    rows = _rows(con, f"""
    SELECT d.tenant, d.bucket, d.dim, d.val, {_GAP_AGG}
    FROM epd d LEFT JOIN gaps g ON g.tenant = d.tenant AND g.thread = d.thread AND g.cut = d.cut
    WHERE d.contact GROUP BY ALL""")
    for r in rows:
        _gap_block(out[(r["tenant"], r["bucket"], r["dim"], r["val"])], r)


def _agent_dims(con: duckdb.DuckDBPyConnection, out: dict) -> None:
    for r in _rows(con, """
    SELECT tenant, bucket, agent, count(*) AS n, count(*) FILTER (WHERE frt <= 300000) AS within,
      sum(frt) AS total
    FROM ep WHERE contact AND human_at IS NOT NULL AND agent IS NOT NULL GROUP BY ALL"""):
        m = out.setdefault((r["tenant"], r["bucket"], "agent", r["agent"]), {})
        m["answered"], m["answered_within_300"] = float(r["n"]), float(r["within"])
        m["frt_mean_ms"] = int(r["total"]) / r["n"]
        m["reply_gap_count"] = 0.0  # replaced below when the agent closed a run
    for r in _rows(con, f"""
    SELECT p.tenant, p.bucket, g.agent, {_GAP_AGG}
    FROM ep p JOIN gaps g ON g.tenant = p.tenant AND g.thread = p.thread AND g.cut = p.cut
    WHERE p.contact AND g.agent IS NOT NULL GROUP BY ALL"""):
        _gap_block(out.setdefault((r["tenant"], r["bucket"], "agent", r["agent"]), {}), r)


def _messages(con: duckdb.DuckDBPyConnection, out: dict) -> None:
    rows = _rows(con, f"""
    WITH m AS (
      SELECT tenant, t - t % {INTERVAL} AS bucket, coalesce(channel, '') AS channel, author_id,
        CASE WHEN etype = 'MessageReceived' THEN ['messages_in']
             WHEN etype = 'MessageSent' AND author_type IN ('agent', 'bot')
               THEN ['messages_out', 'messages_out_' || author_type]
             WHEN etype = 'MessageSent' THEN ['messages_out']
             ELSE ['sentiment_' || label] END AS names,
        etype = 'MessageSent' AND author_type = 'agent' AS human
      FROM ce WHERE etype IN ('MessageReceived', 'MessageSent', 'MessageEnriched'))
    SELECT tenant, bucket, 'overall' AS dim, 'all' AS val, name, count(*) AS n
      FROM (SELECT *, unnest(names) AS name FROM m) GROUP BY ALL
    UNION ALL
    SELECT tenant, bucket, 'channel', channel, name, count(*)
      FROM (SELECT *, unnest(names) AS name FROM m) GROUP BY ALL
    UNION ALL
    SELECT tenant, bucket, 'agent', author_id, 'messages_out', count(*)
      FROM m WHERE human AND author_id IS NOT NULL GROUP BY ALL""")
    for r in rows:
        out.setdefault((r["tenant"], r["bucket"], r["dim"], r["val"]), {})[r["name"]] = float(r["n"])


def _agents(con: duckdb.DuckDBPyConnection) -> dict[tuple, dict]:
    agents: dict[tuple, dict] = {}
    for r in _rows(con, """
    SELECT tenant, agent, bucket, n, sum(b - a) AS ms FROM lvl GROUP BY ALL
    ORDER BY tenant, agent, bucket, n"""):
        f = agents.setdefault((r["tenant"], r["agent"], r["bucket"]), {
            "online_ms": 0, "open_ms": 0, "idle_ms": 0, "peak": 0, "levels": {}})
        ms, n = int(r["ms"]), int(r["n"])
        f["online_ms"] += ms
        f["open_ms"] += n * ms
        f["idle_ms"] += ms if n == 0 else 0
        f["peak"] = max(f["peak"], n)
        f["levels"][str(n)] = ms
    return {k: v for k, v in agents.items() if v["online_ms"] > 0}


def _team(agents: dict[tuple, dict], out: dict) -> None:
    team: dict[tuple, list[dict]] = {}
    for (tenant, _, b), f in agents.items():
        team.setdefault((tenant, b), []).append(f)
    for (tenant, b), fs in team.items():
        online, open_ms = sum(f["online_ms"] for f in fs), sum(f["open_ms"] for f in fs)
        out.setdefault((tenant, b, "overall", "all"), {}).update({
            "agents_online": float(len(fs)), "agents_online_ms": float(online),
            "agents_open_conversation_ms": float(open_ms),
            "agents_idle_ms": float(sum(f["idle_ms"] for f in fs)),
            "team_concurrency": open_ms / online})


def _contacts(con: duckdb.DuckDBPyConnection) -> dict[str, dict]:
    out = {}
    for r in _rows(con, "SELECT * FROM ep WHERE contact"):
        if r["resolved_at"] is not None:
            status = "resolved" if r["human_at"] is not None else "abandoned"
        else:
            status = "answered" if r["human_at"] is not None else "waiting"
        cid = derive_id("kpi.contact", r["tenant"], r["thread"], r["first_eid"])
        out[cid] = {
            "thread_id": r["thread"], "customer_id": r["customer"] or "",
            "channel": r["channel"] or "", "queue": r["q"], "agent_id": r["agent"],
            "interval_start": r["bucket"], "started_at": r["start"],
            "first_human_reply_at": r["human_at"], "first_reply_at": r["reply_at"],
            "resolved_at": r["resolved_at"], "frt_ms": r["frt"], "status": status,
            "short_abandon": bool(r["short"]), "reply_gap_count": int(r["gap_n"]),
            "reply_gap_total_ms": int(r["gap_total"]), "reply_gap_max_ms": int(r["gap_max"]),
            "last_customer_sentiment": r["last_sentiment"],
        }
    return out


def main(argv: list[str] | None = None) -> None:
    """``python -m parley.app.batch.kpi_batch DUMP.jsonl``: print the interval figures as JSON lines."""
    path = (argv or sys.argv[1:])[0]
    with open(path, encoding="utf-8") as f:
        result = compute(json.loads(line) for line in f if line.strip())
    for (tenant, b, dim, value), metrics in sorted(result["intervals"].items()):
        print(json.dumps({"tenant": tenant, "interval_start": b, "dimension": dim,
                          "value": value, "metrics": metrics}, sort_keys=True))


if __name__ == "__main__":
    main()
