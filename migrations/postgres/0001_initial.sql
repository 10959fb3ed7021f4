-- Herald's durable state on PostgreSQL: the same tables as the SQLite
-- backend (migrations/sqlite/0001..0005 folded into one), with ids the
-- database generates, booleans as BOOLEAN and times as Unix milliseconds
-- (BIGINT).

-- Append-only journal: every accepted event, in ingest order (id).
CREATE TABLE events (
    id          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id      TEXT    NOT NULL,
    worker_id   TEXT    NOT NULL,
    task_id     TEXT    NOT NULL,
    seq         BIGINT  NOT NULL,
    state       TEXT    NOT NULL,
    body        TEXT    NOT NULL,   -- normalised event JSON
    received_at BIGINT  NOT NULL,
    UNIQUE (run_id, worker_id, task_id, seq)
);

-- Current state of each worker task (highest seq wins, terminal is final).
CREATE TABLE tasks (
    id                BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id            TEXT    NOT NULL,
    worker_id         TEXT    NOT NULL,
    task_id           TEXT    NOT NULL,
    state             TEXT    NOT NULL,
    state_seq         BIGINT  NOT NULL,
    max_seq           BIGINT  NOT NULL,
    terminal          BOOLEAN NOT NULL,
    display           TEXT    NOT NULL,   -- JSON of the event shown
    labels            TEXT    NOT NULL,   -- JSON object
    version           BIGINT  NOT NULL,   -- bumped when what is shown changes
    first_seen_at     BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL,
    last_heartbeat_at BIGINT,
    UNIQUE (run_id, worker_id, task_id)
);
CREATE INDEX tasks_by_update ON tasks (updated_at DESC, id DESC);
CREATE INDEX tasks_by_run ON tasks (run_id, updated_at DESC);

-- The channels a task was routed to and, where progress is on, the handle
-- of its one live progress message. `position` keeps the order they were
-- added in.
CREATE TABLE task_channels (
    position        BIGINT  GENERATED ALWAYS AS IDENTITY,
    task            BIGINT  NOT NULL REFERENCES tasks (id),
    channel         TEXT    NOT NULL,
    progress        BOOLEAN NOT NULL,
    message_id      TEXT,
    post_key        TEXT    NOT NULL,
    post_started    BOOLEAN NOT NULL DEFAULT FALSE,
    shown_version   BIGINT  NOT NULL DEFAULT 0,
    shown_hash      BIGINT,
    dirty_since     BIGINT,
    last_sent_at    BIGINT,
    retry_at        BIGINT,
    failures        BIGINT  NOT NULL DEFAULT 0,
    posted_at       BIGINT,
    post_started_at BIGINT,
    post_body       TEXT,
    PRIMARY KEY (task, channel)
);
CREATE INDEX task_channels_dirty ON task_channels (channel, dirty_since) WHERE dirty_since IS NOT NULL;

-- Terminal notifications: one durable receipt per (task, channel), created
-- in the ingest transaction (transactional outbox). Never deleted.
CREATE TABLE receipts (
    id              TEXT    PRIMARY KEY,
    task            BIGINT  NOT NULL REFERENCES tasks (id),
    channel         TEXT    NOT NULL,
    event_seq       BIGINT  NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'sending', 'surfaced', 'failed')),
    attempts        BIGINT  NOT NULL DEFAULT 0,
    created_at      BIGINT  NOT NULL,
    next_attempt_at BIGINT  NOT NULL,
    lease_until     BIGINT,
    last_error      TEXT,
    unverified      BOOLEAN NOT NULL DEFAULT FALSE,
    message_id      TEXT,
    surfaced_at     BIGINT,
    backoff         BOOLEAN NOT NULL DEFAULT FALSE,
    attempted_at    BIGINT,
    UNIQUE (task, channel)
);
CREATE INDEX receipts_due ON receipts (channel, status, next_attempt_at);
CREATE INDEX receipts_by_status ON receipts (status, created_at DESC);

-- Messages of the built-in web channel.
CREATE TABLE web_messages (
    id              BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel         TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    idempotency_key TEXT,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
);
CREATE INDEX web_messages_by_channel ON web_messages (channel, id DESC);
CREATE UNIQUE INDEX web_messages_by_key ON web_messages (channel, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- Where a channel lives now, when the platform moved it.
CREATE TABLE channel_targets (
    channel   TEXT   PRIMARY KEY,
    target_id TEXT   NOT NULL,
    moved_at  BIGINT NOT NULL
);

-- Rate budget windows of platforms that enforce their limits.
CREATE TABLE budget_windows (
    key          TEXT   PRIMARY KEY,
    sends        TEXT   NOT NULL,
    paused_until BIGINT,
    updated_at   BIGINT NOT NULL
);

-- Receipts per status, kept by a trigger in the same transaction as every
-- change, so /metrics reads four rows instead of counting the table.
CREATE TABLE receipt_tallies (
    status TEXT   PRIMARY KEY,
    n      BIGINT NOT NULL
);
INSERT INTO receipt_tallies (status, n) VALUES ('pending', 0), ('sending', 0), ('surfaced', 0), ('failed', 0);

CREATE FUNCTION receipts_tally() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE receipt_tallies SET n = n - 1 WHERE status = OLD.status;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        UPDATE receipt_tallies SET n = n + 1 WHERE status = NEW.status;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER receipts_tally_insert AFTER INSERT OR DELETE ON receipts
    FOR EACH ROW EXECUTE FUNCTION receipts_tally();
CREATE TRIGGER receipts_tally_update AFTER UPDATE OF status ON receipts
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION receipts_tally();
