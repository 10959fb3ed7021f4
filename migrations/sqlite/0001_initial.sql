-- Herald's durable state. Times are Unix milliseconds (INTEGER).

-- Append-only journal: every accepted event, in ingest order (id).
CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    run_id      TEXT    NOT NULL,
    worker_id   TEXT    NOT NULL,
    task_id     TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    state       TEXT    NOT NULL,
    body        TEXT    NOT NULL,   -- normalised event JSON
    received_at INTEGER NOT NULL,
    UNIQUE (run_id, worker_id, task_id, seq)
);

-- Current state of each worker task (highest seq wins, terminal is final).
CREATE TABLE tasks (
    id                INTEGER PRIMARY KEY,
    run_id            TEXT    NOT NULL,
    worker_id         TEXT    NOT NULL,
    task_id           TEXT    NOT NULL,
    state             TEXT    NOT NULL,
    state_seq         INTEGER NOT NULL,
    max_seq           INTEGER NOT NULL,
    terminal          INTEGER NOT NULL,
    display           TEXT    NOT NULL,   -- JSON of the event shown
    labels            TEXT    NOT NULL,   -- JSON object
    version           INTEGER NOT NULL,   -- bumped when what is shown changes
    first_seen_at     INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    last_heartbeat_at INTEGER,
    UNIQUE (run_id, worker_id, task_id)
);
CREATE INDEX tasks_by_update ON tasks (updated_at DESC, id DESC);
CREATE INDEX tasks_by_run ON tasks (run_id, updated_at DESC);

-- The channels a task was routed to (decided once, at its first event) and,
-- for channels with progress on, the handle of its one live progress message.
CREATE TABLE task_channels (
    task          INTEGER NOT NULL REFERENCES tasks (id),
    channel       TEXT    NOT NULL,
    progress      INTEGER NOT NULL,   -- 1: keep a live progress message here
    message_id    TEXT,               -- platform id of the progress message
    post_key      TEXT    NOT NULL,   -- idempotency key of its post (reconciled after a crash)
    post_started  INTEGER NOT NULL DEFAULT 0,   -- 1: a post was sent whose outcome is not recorded
    shown_version INTEGER NOT NULL DEFAULT 0,   -- task version the message shows
    shown_hash    INTEGER,            -- hash of the rendering it shows (unchanged text is not re-sent)
    dirty_since   INTEGER,            -- set when a newer version is due; NULL when up to date
    last_sent_at  INTEGER,            -- last post or edit, for progress_min_interval
    PRIMARY KEY (task, channel)
);
CREATE INDEX task_channels_dirty ON task_channels (channel, dirty_since) WHERE dirty_since IS NOT NULL;

-- Terminal notifications: one durable receipt per (task, channel), created in
-- the ingest transaction (transactional outbox). Never deleted.
CREATE TABLE receipts (
    id              TEXT    PRIMARY KEY,   -- idempotency key sent to the platform (<= 25 chars)
    task            INTEGER NOT NULL REFERENCES tasks (id),
    channel         TEXT    NOT NULL,
    event_seq       INTEGER NOT NULL,   -- seq of the terminal event (journal key with the task's ids)
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'sending', 'surfaced', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,   -- the event's acceptance time
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,            -- while 'sending': when the claim expires
    last_error      TEXT,
    unverified      INTEGER NOT NULL DEFAULT 0,  -- last attempt's outcome is unknown: reconcile first
    message_id      TEXT,
    surfaced_at     INTEGER,
    UNIQUE (task, channel)
);
CREATE INDEX receipts_due ON receipts (channel, status, next_attempt_at);
CREATE INDEX receipts_by_status ON receipts (status, created_at DESC);

-- Messages of the built-in web channel: herald is that platform, so it keeps
-- the messages itself.
CREATE TABLE web_messages (
    id         INTEGER PRIMARY KEY,
    channel    TEXT    NOT NULL,
    body       TEXT    NOT NULL,   -- JSON of the rendered message
    idempotency_key TEXT,          -- receipt id of a terminal notification
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX web_messages_by_channel ON web_messages (channel, id DESC);
CREATE UNIQUE INDEX web_messages_by_key ON web_messages (channel, idempotency_key) WHERE idempotency_key IS NOT NULL;
