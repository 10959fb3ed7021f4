-- Herald's stale marks (contracts.rs), the due-index of silent open tasks,
-- and receipts one per (task, channel, event): a task now notifies more
-- than once (a stale mark, then its end).
ALTER TABLE tasks ADD COLUMN stale_since BIGINT;
ALTER TABLE tasks ADD COLUMN stale_marks BIGINT NOT NULL DEFAULT 0;
CREATE INDEX tasks_open_by_last_event ON tasks (updated_at) WHERE NOT terminal AND stale_since IS NULL;
ALTER TABLE receipts DROP CONSTRAINT receipts_task_channel_key;
ALTER TABLE receipts ADD CONSTRAINT receipts_task_channel_event_key UNIQUE (task, channel, event_seq);
