-- A task's own deadline (first event + extra.timeout_seconds), and the two
-- due-indexes the contract watcher reads instead of scanning every task.
ALTER TABLE tasks ADD COLUMN deadline_at BIGINT;
CREATE INDEX tasks_by_own_deadline ON tasks (deadline_at) WHERE NOT terminal AND deadline_at IS NOT NULL;
CREATE INDEX tasks_open_by_first_seen ON tasks (first_seen_at) WHERE NOT terminal AND deadline_at IS NULL;
