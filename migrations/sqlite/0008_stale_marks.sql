-- Herald's stale marks (contracts.rs): when a task was marked stale and how
-- many marks it has had; the due-index of silent open tasks; and receipts
-- one per (task, channel, event) instead of per (task, channel), since a
-- task now notifies more than once (a stale mark, then its end).
ALTER TABLE tasks ADD COLUMN stale_since INTEGER;
ALTER TABLE tasks ADD COLUMN stale_marks INTEGER NOT NULL DEFAULT 0;
CREATE INDEX tasks_open_by_last_event ON tasks (updated_at) WHERE terminal = 0 AND stale_since IS NULL;

-- SQLite cannot drop a table's UNIQUE constraint: rebuild the table.
CREATE TABLE receipts_new (
    id              TEXT    PRIMARY KEY,
    task            INTEGER NOT NULL REFERENCES tasks (id),
    channel         TEXT    NOT NULL,
    event_seq       INTEGER NOT NULL,   -- seq of the event it notifies (journal key with the task's ids)
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'sending', 'surfaced', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,
    last_error      TEXT,
    unverified      INTEGER NOT NULL DEFAULT 0,
    message_id      TEXT,
    surfaced_at     INTEGER,
    backoff         INTEGER NOT NULL DEFAULT 0,
    attempted_at    INTEGER,
    UNIQUE (task, channel, event_seq)
);
INSERT INTO receipts_new (id, task, channel, event_seq, status, attempts, created_at, next_attempt_at,
                          lease_until, last_error, unverified, message_id, surfaced_at, backoff, attempted_at)
    SELECT id, task, channel, event_seq, status, attempts, created_at, next_attempt_at,
           lease_until, last_error, unverified, message_id, surfaced_at, backoff, attempted_at
    FROM receipts;
DROP TABLE receipts;
ALTER TABLE receipts_new RENAME TO receipts;
CREATE INDEX receipts_due ON receipts (channel, status, next_attempt_at);
CREATE INDEX receipts_by_status ON receipts (status, created_at DESC);

-- The tallies' triggers went with the old table (the counts are unchanged).
CREATE TRIGGER receipts_tally_insert AFTER INSERT ON receipts
BEGIN
    INSERT INTO receipt_tallies (status, n) VALUES (NEW.status, 1)
        ON CONFLICT (status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER receipts_tally_update AFTER UPDATE OF status ON receipts
WHEN OLD.status IS NOT NEW.status
BEGIN
    UPDATE receipt_tallies SET n = n - 1 WHERE status = OLD.status;
    INSERT INTO receipt_tallies (status, n) VALUES (NEW.status, 1)
        ON CONFLICT (status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER receipts_tally_delete AFTER DELETE ON receipts
BEGIN
    UPDATE receipt_tallies SET n = n - 1 WHERE status = OLD.status;
END;
