-- KPI figures for analysts, in SQL that both SQLite and PostgreSQL run, spelling the formulas of
-- streams/kpi/arithmetic.py (the KPI processor's, `parley kpi`'s and the API's arithmetic) so
-- that they give the same figures; tests/unit/test_kpi_one_arithmetic.py holds them equal on both
-- databases. KPIS.md is the definition.

-- Each tenant's as-of time: the latest event time in its KPI tables (the processor's watermark),
-- the "now" of the contacts still waiting.
CREATE VIEW kpi_as_of AS
SELECT tenant_id, MAX(t) AS as_of FROM (
  SELECT tenant_id, MAX(updated_at) AS t FROM kpi_contacts GROUP BY tenant_id
  UNION ALL SELECT tenant_id, MAX(updated_at) AS t FROM kpi_intervals GROUP BY tenant_id
  UNION ALL SELECT tenant_id, MAX(updated_at) AS t FROM kpi_agent_intervals GROUP BY tenant_id
) x GROUP BY tenant_id;

-- Each contact's class for SL(300) and SL(20) (arithmetic.sl_class): within / after (a first
-- human reply at most T after the start, or later); short (ended with no human reply within
-- 30 s, left out); abandoned (ended with no human reply after 30 s, missed, even before T);
-- over (still waiting longer than T as of its tenant's as-of time, missed); pending (still
-- waiting at most T, left out).
CREATE VIEW kpi_contact_sl AS
SELECT c.tenant_id, c.contact_id, c.thread_id, c.channel, c.queue, c.agent_id, c.interval_start,
       c.interval_start - c.interval_start % 86400000 AS day_start,
       c.started_at, c.first_human_reply_at, c.resolved_at, c.frt_ms, a.as_of,
       CASE WHEN c.first_human_reply_at IS NOT NULL THEN
              CASE WHEN c.first_human_reply_at - c.started_at <= 300000 THEN 'within' ELSE 'after' END
            WHEN c.resolved_at IS NOT NULL THEN
              CASE WHEN c.resolved_at - c.started_at <= 30000 THEN 'short' ELSE 'abandoned' END
            WHEN a.as_of - c.started_at > 300000 THEN 'over'
            ELSE 'pending' END AS sl_300_class,
       CASE WHEN c.first_human_reply_at IS NOT NULL THEN
              CASE WHEN c.first_human_reply_at - c.started_at <= 20000 THEN 'within' ELSE 'after' END
            WHEN c.resolved_at IS NOT NULL THEN
              CASE WHEN c.resolved_at - c.started_at <= 30000 THEN 'short' ELSE 'abandoned' END
            WHEN a.as_of - c.started_at > 20000 THEN 'over'
            ELSE 'pending' END AS sl_20_class
FROM kpi_contacts c LEFT JOIN kpi_as_of a ON a.tenant_id = c.tenant_id;

-- Per tenant, UTC day (of the interval a contact was offered in) and channel (dimension
-- 'channel'), and overall (dimension 'overall', value 'all'): contacts offered and answered,
-- SL(300) and SL(20) with the target met or not, FRT p50 and p90 (nearest rank: the value at
-- rank ceil(p n / 100), as (p n + 99) / 100 in integer arithmetic), and bot containment (the
-- processor's per-thread counts from kpi_intervals, summed: each thread once).
CREATE VIEW kpi_daily AS
WITH contacts AS (
  SELECT tenant_id, day_start, 'overall' AS dimension, 'all' AS dimension_value, frt_ms,
         sl_300_class, sl_20_class
  FROM kpi_contact_sl
  UNION ALL
  SELECT tenant_id, day_start, 'channel', COALESCE(NULLIF(channel, ''), '?'), frt_ms,
         sl_300_class, sl_20_class
  FROM kpi_contact_sl
),
ranked AS (
  SELECT tenant_id, day_start, dimension, dimension_value, frt_ms,
         ROW_NUMBER() OVER (PARTITION BY tenant_id, day_start, dimension, dimension_value
                            ORDER BY frt_ms) AS rn,
         COUNT(*) OVER (PARTITION BY tenant_id, day_start, dimension, dimension_value) AS n
  FROM contacts WHERE frt_ms IS NOT NULL
),
percentiles AS (
  SELECT tenant_id, day_start, dimension, dimension_value,
         MAX(CASE WHEN rn = (50 * n + 99) / 100 THEN frt_ms END) AS frt_p50_ms,
         MAX(CASE WHEN rn = (90 * n + 99) / 100 THEN frt_ms END) AS frt_p90_ms
  FROM ranked GROUP BY tenant_id, day_start, dimension, dimension_value
),
levels AS (
  SELECT tenant_id, day_start, dimension, dimension_value,
         COUNT(*) AS offered,
         SUM(CASE WHEN frt_ms IS NOT NULL THEN 1 ELSE 0 END) AS answered,
         SUM(CASE WHEN sl_300_class = 'within' THEN 1 ELSE 0 END) AS within_300,
         SUM(CASE WHEN sl_300_class IN ('within', 'after', 'abandoned', 'over') THEN 1 ELSE 0 END)
           AS counted_300,
         SUM(CASE WHEN sl_20_class = 'within' THEN 1 ELSE 0 END) AS within_20,
         SUM(CASE WHEN sl_20_class IN ('within', 'after', 'abandoned', 'over') THEN 1 ELSE 0 END)
           AS counted_20,
         SUM(CASE WHEN sl_300_class = 'abandoned' THEN 1 ELSE 0 END) AS long_abandoned,
         SUM(CASE WHEN sl_300_class = 'short' THEN 1 ELSE 0 END) AS short_abandoned
  FROM contacts GROUP BY tenant_id, day_start, dimension, dimension_value
),
threads AS (
  SELECT tenant_id, interval_start - interval_start % 86400000 AS day_start, dimension,
         CASE WHEN dimension = 'overall' THEN 'all'
              ELSE COALESCE(NULLIF(dimension_value, ''), '?') END AS dimension_value,
         SUM(CASE WHEN metric = 'threads' THEN value ELSE 0 END) AS threads,
         SUM(CASE WHEN metric = 'bot_contained' THEN value ELSE 0 END) AS bot_contained
  FROM kpi_interval_metrics
  WHERE dimension IN ('overall', 'channel') AND metric IN ('threads', 'bot_contained')
  GROUP BY tenant_id, interval_start - interval_start % 86400000, dimension,
           CASE WHEN dimension = 'overall' THEN 'all'
                ELSE COALESCE(NULLIF(dimension_value, ''), '?') END
),
keyset AS (
  SELECT tenant_id, day_start, dimension, dimension_value FROM levels
  UNION
  SELECT tenant_id, day_start, dimension, dimension_value FROM threads
)
SELECT k.tenant_id, k.day_start, k.dimension, k.dimension_value,
       COALESCE(l.offered, 0) AS offered, COALESCE(l.answered, 0) AS answered,
       COALESCE(l.within_300, 0) AS within_300, COALESCE(l.counted_300, 0) AS counted_300,
       CASE WHEN l.counted_300 > 0
            THEN CAST(l.within_300 AS DOUBLE PRECISION) / l.counted_300 END AS sl_300,
       CASE WHEN l.counted_300 > 0
            THEN CASE WHEN 100 * l.within_300 >= 90 * l.counted_300 THEN 1 ELSE 0 END END
         AS sl_300_met,
       COALESCE(l.within_20, 0) AS within_20, COALESCE(l.counted_20, 0) AS counted_20,
       CASE WHEN l.counted_20 > 0
            THEN CAST(l.within_20 AS DOUBLE PRECISION) / l.counted_20 END AS sl_20,
       CASE WHEN l.counted_20 > 0
            THEN CASE WHEN 100 * l.within_20 >= 80 * l.counted_20 THEN 1 ELSE 0 END END
         AS sl_20_met,
       COALESCE(l.long_abandoned, 0) AS long_abandoned,
       COALESCE(l.short_abandoned, 0) AS short_abandoned,
       p.frt_p50_ms, p.frt_p90_ms,
       t.threads, t.bot_contained,
       CASE WHEN t.threads > 0 THEN t.bot_contained / t.threads END AS bot_containment
FROM keyset k
LEFT JOIN levels l ON l.tenant_id = k.tenant_id AND l.day_start = k.day_start
      AND l.dimension = k.dimension AND l.dimension_value = k.dimension_value
LEFT JOIN percentiles p ON p.tenant_id = k.tenant_id AND p.day_start = k.day_start
      AND p.dimension = k.dimension AND p.dimension_value = k.dimension_value
LEFT JOIN threads t ON t.tenant_id = k.tenant_id AND t.day_start = k.day_start
      AND t.dimension = k.dimension AND t.dimension_value = k.dimension_value;
