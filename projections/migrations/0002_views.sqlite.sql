-- Views for analysts (SQLite flavour: json_each, datetime).

-- One row per (interval, dimension, value, metric): the metrics map unpivoted.
CREATE VIEW kpi_interval_metrics AS
SELECT i.tenant_id, i.interval_start,
       datetime(i.interval_start / 1000, 'unixepoch') AS interval_utc,
       i.dimension, i.dimension_value,
       j.key AS metric, CAST(j.value AS REAL) AS value
FROM kpi_intervals i, json_each(i.metrics) j;

-- Agent intervals with readable times and minutes.
CREATE VIEW kpi_agent_intervals_v AS
SELECT a.*, datetime(a.interval_start / 1000, 'unixepoch') AS interval_utc,
       a.online_ms / 60000.0 AS online_min, a.idle_ms / 60000.0 AS idle_min
FROM kpi_agent_intervals a;

-- Every message with its enrichment and its latest delivery status, for analysts.
-- An enrichment names the message by its event id (or by the id of the event it was derived from).
CREATE VIEW thread_messages AS
SELECT m.*,
       COALESCE(e1.language, e2.language)               AS language,
       COALESCE(e1.sentiment_label, e2.sentiment_label) AS sentiment_label,
       COALESCE(e1.sentiment_score, e2.sentiment_score) AS sentiment_score,
       COALESCE(e1.intents, e2.intents)                 AS intents,
       d.status                                         AS delivery_status,
       d.status_at                                      AS delivery_status_at
FROM messages m
LEFT JOIN message_enrichments e1
       ON e1.tenant_id = m.tenant_id AND e1.message_event_id = m.event_id
LEFT JOIN message_enrichments e2
       ON e2.tenant_id = m.tenant_id AND e2.message_event_id = m.causation_id
LEFT JOIN message_deliveries d
       ON d.tenant_id = m.tenant_id AND d.channel = m.channel
      AND d.channel_message_id = m.channel_message_id AND m.direction = 'out';
