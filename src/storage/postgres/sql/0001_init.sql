-- anchorbot's PostgreSQL schema, version 1: the same records as the sled trees, one table each.
-- Keys are text in the "C" collation so that every ORDER BY is byte order, as in sled.

-- Each conversation's anchor (JSON). `body` is NULL only inside the transaction that creates
-- the row (see `update_anchor`); a committed row always has one.
CREATE TABLE anchors (
    conv       text COLLATE "C" PRIMARY KEY,
    body       bytea,
    updated_ms bigint NOT NULL
);

-- Events handled, for de-duplication; pruned after a day.
CREATE TABLE seen (
    conv     text COLLATE "C" NOT NULL,
    event_id text COLLATE "C" NOT NULL,
    at_ms    bigint NOT NULL,
    PRIMARY KEY (conv, event_id)
);
CREATE INDEX seen_at_ms ON seen (at_ms);

-- Document records (JSON).
CREATE TABLE documents (
    conv        text COLLATE "C" NOT NULL,
    doc         text COLLATE "C" NOT NULL,
    ingested_ms bigint NOT NULL,
    record      bytea NOT NULL,
    PRIMARY KEY (conv, doc)
);

-- Chunks (JSON) with their vectors (little-endian f32s).
CREATE TABLE chunks (
    conv     text COLLATE "C" NOT NULL,
    doc      text COLLATE "C" NOT NULL,
    page     bigint NOT NULL CHECK (page >= 0),
    position bigint NOT NULL CHECK (position >= 0),
    record   bytea NOT NULL,
    vector   bytea,
    PRIMARY KEY (conv, doc, page, position)
);

-- Files kept for retries, by document.
CREATE TABLE sources (
    conv  text COLLATE "C" NOT NULL,
    doc   text COLLATE "C" NOT NULL,
    bytes bytea NOT NULL,
    PRIMARY KEY (conv, doc)
);
