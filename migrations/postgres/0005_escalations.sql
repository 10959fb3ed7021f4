-- Escalations (escalations.rs): what herald escalated of a task (a JSON
-- document: sent conditions, open escalations, restarts, acknowledgement),
-- and when the contract watcher should weigh it next, with its due-index.
ALTER TABLE tasks ADD COLUMN escalation TEXT NOT NULL DEFAULT '{}';
ALTER TABLE tasks ADD COLUMN escalate_at BIGINT;
CREATE INDEX tasks_escalation_due ON tasks (escalate_at) WHERE escalate_at IS NOT NULL;
