-- anchorbot's PostgreSQL schema, version 3: a journaled event remembers the messages its
-- answer posted so far, so a process that takes the event over replaces them.
ALTER TABLE journal ADD COLUMN reply bytea NOT NULL DEFAULT '\x'::bytea;
