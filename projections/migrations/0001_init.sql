-- Parley projections: the initial schema (SQLite and PostgreSQL).
-- Times are epoch milliseconds UTC in event time (BIGINT). JSON columns are TEXT.
-- Flags are INTEGER 0/1 so the same SQL reads them on both databases.

-- Bookkeeping: where each projection has read up to, and the events it applied (dedup).
CREATE TABLE projection_offsets (
  projection   TEXT    NOT NULL,
  topic        TEXT    NOT NULL,
  partition    INTEGER NOT NULL,
  next_offset  BIGINT  NOT NULL,
  PRIMARY KEY (projection, topic, partition)
);

CREATE TABLE projection_events (
  projection  TEXT NOT NULL,
  event_id    TEXT NOT NULL,
  PRIMARY KEY (projection, event_id)
);

-- customers: the unified profile.
CREATE TABLE customers (
  tenant_id             TEXT    NOT NULL,
  customer_id           TEXT    NOT NULL,
  name                  TEXT,
  name_source           TEXT,
  tier                  TEXT,
  lifecycle_stage       TEXT,
  attributes            TEXT    NOT NULL DEFAULT '{}',
  context_sources       TEXT    NOT NULL DEFAULT '[]',
  languages             TEXT    NOT NULL DEFAULT '[]',
  first_contact_at      BIGINT,
  last_contact_at       BIGINT,
  message_count         INTEGER NOT NULL DEFAULT 0,
  thread_count          INTEGER NOT NULL DEFAULT 0,
  open_threads          TEXT    NOT NULL DEFAULT '[]',
  open_thread_count     INTEGER NOT NULL DEFAULT 0,
  last_sentiment_label  TEXT,
  last_sentiment_score  DOUBLE PRECISION,
  last_sentiment_at     BIGINT,
  merged_into           TEXT,
  versions              TEXT    NOT NULL DEFAULT '{}',
  updated_at            BIGINT,
  last_event_id         TEXT,
  PRIMARY KEY (tenant_id, customer_id)
);
CREATE INDEX customers_merged_into ON customers (tenant_id, merged_into);
CREATE INDEX customers_last_contact ON customers (tenant_id, last_contact_at);

CREATE TABLE customer_identities (
  tenant_id      TEXT NOT NULL,
  identity_key   TEXT NOT NULL,
  customer_id    TEXT NOT NULL,
  kind           TEXT NOT NULL,
  channel        TEXT,
  value          TEXT NOT NULL,
  display_name   TEXT,
  signal         TEXT,
  linked_at      BIGINT,
  first_seen_at  BIGINT,
  last_seen_at   BIGINT,
  version        TEXT NOT NULL DEFAULT '[]',
  PRIMARY KEY (tenant_id, identity_key)
);
CREATE INDEX customer_identities_customer ON customer_identities (tenant_id, customer_id);

-- threads and messages.
CREATE TABLE threads (
  tenant_id               TEXT    NOT NULL,
  thread_id               TEXT    NOT NULL,
  customer_id             TEXT,
  status                  TEXT,
  subject                 TEXT,
  queue                   TEXT,
  assignee                TEXT,
  priority                INTEGER NOT NULL DEFAULT 0,
  channels                TEXT    NOT NULL DEFAULT '[]',
  started_at              BIGINT,
  first_message_event_id  TEXT,
  first_message_at        BIGINT,
  last_message_at         BIGINT,
  last_inbound_at         BIGINT,
  last_outbound_at        BIGINT,
  resolved_at             BIGINT,
  resolved_by             TEXT,
  reopened_count          INTEGER NOT NULL DEFAULT 0,
  transfer_count          INTEGER NOT NULL DEFAULT 0,
  message_count           INTEGER NOT NULL DEFAULT 0,
  inbound_count           INTEGER NOT NULL DEFAULT 0,
  outbound_count          INTEGER NOT NULL DEFAULT 0,
  last_sentiment_label    TEXT,
  last_sentiment_score    DOUBLE PRECISION,
  last_sentiment_at       BIGINT,
  routed_to               TEXT,
  bot_id                  TEXT,
  routing_reasons         TEXT    NOT NULL DEFAULT '[]',
  business_hours_open     INTEGER,
  versions                TEXT    NOT NULL DEFAULT '{}',
  updated_at              BIGINT,
  last_event_id           TEXT,
  PRIMARY KEY (tenant_id, thread_id)
);
CREATE INDEX threads_customer ON threads (tenant_id, customer_id);
CREATE INDEX threads_status ON threads (tenant_id, status, queue);
CREATE INDEX threads_assignee ON threads (tenant_id, assignee);

CREATE TABLE messages (
  event_id                     TEXT   NOT NULL PRIMARY KEY,
  tenant_id                    TEXT   NOT NULL,
  thread_id                    TEXT,
  customer_id                  TEXT,
  direction                    TEXT   NOT NULL,
  channel                      TEXT   NOT NULL,
  channel_account_id           TEXT,
  channel_message_id           TEXT,
  message_id                   TEXT,
  author_type                  TEXT   NOT NULL,
  author_id                    TEXT,
  party_id                     TEXT,
  party_name                   TEXT,
  text                         TEXT,
  subject                      TEXT,
  kind                         TEXT,
  template_name                TEXT,
  attachments                  TEXT   NOT NULL DEFAULT '[]',
  rich                         TEXT,
  reply_to_channel_message_id  TEXT,
  in_reply_to_event_id         TEXT,
  causation_id                 TEXT,
  correlation_id               TEXT,
  occurred_at                  BIGINT NOT NULL
);
CREATE INDEX messages_thread ON messages (tenant_id, thread_id, occurred_at);
CREATE INDEX messages_customer ON messages (tenant_id, customer_id, occurred_at);
CREATE INDEX messages_channel_id ON messages (tenant_id, channel, channel_message_id);
CREATE INDEX messages_causation ON messages (causation_id);

CREATE TABLE message_enrichments (
  tenant_id            TEXT   NOT NULL,
  message_event_id     TEXT   NOT NULL,
  thread_id            TEXT,
  customer_id          TEXT,
  channel              TEXT,
  language             TEXT,
  language_confidence  DOUBLE PRECISION,
  sentiment_score      DOUBLE PRECISION,
  sentiment_label      TEXT,
  intents              TEXT   NOT NULL DEFAULT '[]',
  enricher             TEXT,
  fallback_used        INTEGER NOT NULL DEFAULT 0,
  occurred_at          BIGINT,
  event_id             TEXT,
  PRIMARY KEY (tenant_id, message_event_id)
);
CREATE INDEX message_enrichments_time ON message_enrichments (tenant_id, occurred_at);

CREATE TABLE message_deliveries (
  tenant_id           TEXT NOT NULL,
  channel             TEXT NOT NULL,
  channel_message_id  TEXT NOT NULL,
  status              TEXT NOT NULL,
  status_at           BIGINT,
  error_code          TEXT,
  error_message       TEXT,
  recipient_id        TEXT,
  history             TEXT NOT NULL DEFAULT '[]',
  version             TEXT NOT NULL DEFAULT '[]',
  PRIMARY KEY (tenant_id, channel, channel_message_id)
);

-- KPI tables, from the KPI events (latest per key wins).
CREATE TABLE kpi_contacts (
  tenant_id                TEXT    NOT NULL,
  contact_id               TEXT    NOT NULL,
  thread_id                TEXT,
  customer_id              TEXT,
  channel                  TEXT,
  queue                    TEXT,
  agent_id                 TEXT,
  interval_start           BIGINT  NOT NULL,
  started_at               BIGINT  NOT NULL,
  first_human_reply_at     BIGINT,
  first_reply_at           BIGINT,
  resolved_at              BIGINT,
  frt_ms                   BIGINT,
  first_reply_ms           BIGINT,
  resolution_ms            BIGINT,
  status                   TEXT,
  short_abandon            INTEGER NOT NULL DEFAULT 0,
  reply_gap_count          INTEGER NOT NULL DEFAULT 0,
  reply_gap_total_ms       BIGINT  NOT NULL DEFAULT 0,
  reply_gap_max_ms         BIGINT  NOT NULL DEFAULT 0,
  last_customer_sentiment  TEXT,
  definition_version       TEXT,
  extra                    TEXT    NOT NULL DEFAULT '{}',
  event_id                 TEXT,
  updated_at               BIGINT,
  PRIMARY KEY (tenant_id, contact_id)
);
CREATE INDEX kpi_contacts_interval ON kpi_contacts (tenant_id, interval_start);
CREATE INDEX kpi_contacts_channel ON kpi_contacts (tenant_id, channel, interval_start);
CREATE INDEX kpi_contacts_queue ON kpi_contacts (tenant_id, queue, interval_start);
CREATE INDEX kpi_contacts_agent ON kpi_contacts (tenant_id, agent_id, interval_start);

CREATE TABLE kpi_intervals (
  tenant_id           TEXT   NOT NULL,
  interval_start      BIGINT NOT NULL,
  dimension           TEXT   NOT NULL,
  dimension_value     TEXT   NOT NULL,
  metrics             TEXT   NOT NULL DEFAULT '{}',
  definition_version  TEXT,
  extra               TEXT   NOT NULL DEFAULT '{}',
  event_id            TEXT,
  updated_at          BIGINT,
  PRIMARY KEY (tenant_id, interval_start, dimension, dimension_value)
);
CREATE INDEX kpi_intervals_dimension ON kpi_intervals (dimension, dimension_value, interval_start);

CREATE TABLE kpi_agent_intervals (
  tenant_id             TEXT    NOT NULL,
  agent_id              TEXT    NOT NULL,
  interval_start        BIGINT  NOT NULL,
  online_ms             BIGINT  NOT NULL DEFAULT 0,
  open_conversation_ms  BIGINT  NOT NULL DEFAULT 0,
  idle_ms               BIGINT  NOT NULL DEFAULT 0,
  peak_concurrency      INTEGER NOT NULL DEFAULT 0,
  concurrency           DOUBLE PRECISION,
  time_at_level_ms       TEXT    NOT NULL DEFAULT '{}',
  definition_version    TEXT,
  extra                 TEXT    NOT NULL DEFAULT '{}',
  event_id              TEXT,
  updated_at            BIGINT,
  PRIMARY KEY (tenant_id, agent_id, interval_start)
);
CREATE INDEX kpi_agent_intervals_interval ON kpi_agent_intervals (tenant_id, interval_start);

CREATE TABLE agents (
  tenant_id     TEXT    NOT NULL,
  agent_id      TEXT    NOT NULL,
  display_name  TEXT,
  presence      TEXT,
  capacity      INTEGER,
  skills        TEXT    NOT NULL DEFAULT '[]',
  languages     TEXT    NOT NULL DEFAULT '[]',
  channels      TEXT    NOT NULL DEFAULT '[]',
  queues        TEXT    NOT NULL DEFAULT '[]',
  presence_at   BIGINT,
  event_id      TEXT,
  PRIMARY KEY (tenant_id, agent_id)
);
