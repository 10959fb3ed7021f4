-- Replicas and channel leases. SQLite serves one herald process (the
-- lock file beside the database), which leases every channel; the tables
-- are the same as on PostgreSQL so one delivery engine runs on both.
CREATE TABLE replicas (
    id TEXT PRIMARY KEY,
    listen TEXT NOT NULL,
    lock_key INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);

-- One row per channel ever leased. `epoch` is new at every grant, so a
-- write fenced by (channel, epoch) fails once the lease has passed on.
CREATE TABLE channel_leases (
    channel TEXT PRIMARY KEY,
    holder TEXT,
    epoch INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    taken_at INTEGER NOT NULL
);
