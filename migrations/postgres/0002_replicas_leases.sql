-- Replicas and channel leases: each channel is delivered by one live
-- replica at a time (see src/delivery/leases.rs).

-- A live replica holds a session advisory lock (HERALD_NS, lock_key) on a
-- connection of its own; the server drops it when the process dies, so a
-- kill -9 is noticed at the next tick of any other replica, and
-- `expires_at` covers a replica that hangs or is cut off.
CREATE SEQUENCE replica_lock_keys AS INTEGER;

CREATE TABLE replicas (
    id TEXT PRIMARY KEY,
    listen TEXT NOT NULL,
    lock_key INTEGER NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- `epoch` is new at every grant (from the sequence), so a write fenced by
-- (channel, epoch) fails once the lease has passed on.
CREATE SEQUENCE lease_epochs AS BIGINT;

CREATE TABLE channel_leases (
    channel TEXT PRIMARY KEY,
    holder TEXT,
    epoch BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    taken_at BIGINT NOT NULL
);
