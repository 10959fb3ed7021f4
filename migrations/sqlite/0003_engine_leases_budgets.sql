-- Delivery engine: receipts remember whether they wait on the retry
-- schedule (a failing platform) so a recovery can pull them forward;
-- progress messages get their own retry time and failure count, decided by
-- the same policy as receipts; rate budgets are kept across restarts.

ALTER TABLE receipts ADD COLUMN backoff INTEGER NOT NULL DEFAULT 0;  -- 1: waiting on retry_schedule after a failure
ALTER TABLE receipts ADD COLUMN attempted_at INTEGER;                -- when the last attempt was claimed
CREATE INDEX receipts_leases ON receipts (channel, status, lease_until);

ALTER TABLE task_channels ADD COLUMN retry_at INTEGER;                 -- not before (after a failed send)
ALTER TABLE task_channels ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;  -- failed sends in a row
ALTER TABLE task_channels ADD COLUMN posted_at INTEGER;        -- when message_id was first confirmed
ALTER TABLE task_channels ADD COLUMN post_started_at INTEGER;  -- when the post with an unknown outcome was sent
ALTER TABLE task_channels ADD COLUMN post_body TEXT;           -- what that post carried (JSON), to probe for it

-- One row per rate budget window of a platform that enforces its limits:
-- the sends still inside the window and any retry-after in force.
CREATE TABLE budget_windows (
    key          TEXT    PRIMARY KEY,
    sends        TEXT    NOT NULL,   -- JSON array of Unix ms
    paused_until INTEGER,
    updated_at   INTEGER NOT NULL
);
