-- anchorbot's PostgreSQL schema, version 2: the journal of accepted events, and leases.

-- Events claimed before the platform was told they arrived, with the event itself, until the
-- transaction that commits their answer (or tells their failure) moves them to `seen`.
CREATE TABLE journal (
    conv     text COLLATE "C" NOT NULL,
    event_id text COLLATE "C" NOT NULL,
    at_ms    bigint NOT NULL,
    owner    text NOT NULL,
    payload  bytea NOT NULL,
    PRIMARY KEY (conv, event_id)
);
CREATE INDEX journal_at_ms ON journal (at_ms);

-- What one process at a time may do, until `expires_at` (the database's clock, so replicas'
-- clocks need not agree).
CREATE TABLE leases (
    name       text COLLATE "C" PRIMARY KEY,
    holder     text NOT NULL,
    expires_at timestamptz NOT NULL
);
