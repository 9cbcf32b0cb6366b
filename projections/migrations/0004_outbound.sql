-- Outbound delivery (the egress, parley.outbound) and the customer-service windows on threads.

-- Each thread's window: the channel account of its latest customer message, when that was, when
-- the standard window closes (WhatsApp 24 h, Messenger/Instagram 24 h, WeChat 48 h; NULL on
-- channels without one) and, on Messenger/Instagram, until when a human agent may still answer
-- (HUMAN_AGENT tag, 7 days). Delivery failures the agent must see.
ALTER TABLE threads ADD COLUMN window_channel TEXT;
ALTER TABLE threads ADD COLUMN window_account TEXT;
ALTER TABLE threads ADD COLUMN window_last_inbound_at BIGINT;
ALTER TABLE threads ADD COLUMN window_closes_at BIGINT;
ALTER TABLE threads ADD COLUMN window_human_agent_closes_at BIGINT;
ALTER TABLE threads ADD COLUMN delivery_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE threads ADD COLUMN last_delivery_failure TEXT;

-- One row per outbound message the egress handled: its send status (attempting, retrying, sent,
-- failed), attempts, the provider's ids (the key delivery receipts are joined on), the error, and
-- how the message was rendered for the channel.
CREATE TABLE outbound_deliveries (
  tenant_id            TEXT    NOT NULL,
  message_event_id     TEXT    NOT NULL,
  thread_id            TEXT,
  customer_id          TEXT,
  channel              TEXT    NOT NULL,
  channel_account_id   TEXT,
  message_id           TEXT,
  recipient_id         TEXT,
  status               TEXT    NOT NULL,
  attempts             INTEGER NOT NULL DEFAULT 0,
  channel_message_id   TEXT,
  channel_message_ids  TEXT    NOT NULL DEFAULT '[]',
  error_code           TEXT,
  error_reason         TEXT,
  permanent            INTEGER NOT NULL DEFAULT 0,
  http_status          INTEGER,
  duplicate            INTEGER NOT NULL DEFAULT 0,
  rendering            TEXT,
  first_attempt_at     BIGINT,
  updated_at           BIGINT,
  version              TEXT    NOT NULL DEFAULT '[]',
  PRIMARY KEY (tenant_id, message_event_id)
);
CREATE INDEX outbound_deliveries_provider_id ON outbound_deliveries (tenant_id, channel, channel_message_id);
CREATE INDEX outbound_deliveries_thread ON outbound_deliveries (tenant_id, thread_id);

-- thread_messages again, with delivery: a provider receipt (delivered, read, failed...) when
-- there is one, else the egress's send status; receipts are joined on the provider's id the
-- egress recorded (an outbound message's own channel_message_id is unknown when it is written).
DROP VIEW thread_messages;
CREATE VIEW thread_messages AS
SELECT m.*,
       COALESCE(e1.language, e2.language)                       AS language,
       COALESCE(e1.sentiment_label, e2.sentiment_label)         AS sentiment_label,
       COALESCE(e1.sentiment_score, e2.sentiment_score)         AS sentiment_score,
       COALESCE(e1.intents, e2.intents)                         AS intents,
       COALESCE(d.status, o.status)                             AS delivery_status,
       COALESCE(d.status_at, o.updated_at)                      AS delivery_status_at,
       o.status                                                 AS send_status,
       o.attempts                                               AS send_attempts,
       COALESCE(d.error_code, o.error_code)                     AS delivery_error_code,
       COALESCE(d.error_message, o.error_reason)                AS delivery_error_reason,
       COALESCE(m.channel_message_id, o.channel_message_id)     AS provider_message_id,
       o.rendering                                              AS delivery_rendering
FROM messages m
LEFT JOIN message_enrichments e1
       ON e1.tenant_id = m.tenant_id AND e1.message_event_id = m.event_id
LEFT JOIN message_enrichments e2
       ON e2.tenant_id = m.tenant_id AND e2.message_event_id = m.causation_id
LEFT JOIN outbound_deliveries o
       ON o.tenant_id = m.tenant_id AND o.message_event_id = m.event_id AND m.direction = 'out'
LEFT JOIN message_deliveries d
       ON d.tenant_id = m.tenant_id AND d.channel = m.channel
      AND d.channel_message_id = COALESCE(m.channel_message_id, o.channel_message_id) AND m.direction = 'out';
