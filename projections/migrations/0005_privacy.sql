-- Privacy (docs/PRIVACY.md): when a customer was erased, and how far each database has applied
-- the key store's log of destructions (erasures, retention expiries) to its rows.
ALTER TABLE customers ADD COLUMN erased_at BIGINT;

CREATE TABLE privacy_checkpoint (
  name  TEXT   NOT NULL PRIMARY KEY,
  seq   BIGINT NOT NULL
);
