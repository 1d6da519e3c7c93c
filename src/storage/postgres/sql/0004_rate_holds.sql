-- anchorbot's PostgreSQL schema, version 4: rate-limit holds shared by the replicas.

-- A platform's 429 received by one process holds its key (the budget's key as text) for
-- every process until `expires_at` (the database's clock, so replicas' clocks need not agree).
-- Not conversation data: the listings, /clear and forget never read it.
CREATE TABLE rate_holds (
    key        text COLLATE "C" PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
