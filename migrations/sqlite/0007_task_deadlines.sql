-- A task's own deadline (first event + extra.timeout_seconds), and the two
-- due-indexes the contract watcher reads instead of scanning every task:
-- open tasks by their own deadline, and open tasks without one by their
-- first event (for [contracts] deadline).
ALTER TABLE tasks ADD COLUMN deadline_at INTEGER;
CREATE INDEX tasks_by_own_deadline ON tasks (deadline_at) WHERE terminal = 0 AND deadline_at IS NOT NULL;
CREATE INDEX tasks_open_by_first_seen ON tasks (first_seen_at) WHERE terminal = 0 AND deadline_at IS NULL;
