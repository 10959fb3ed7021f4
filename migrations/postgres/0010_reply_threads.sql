-- `thread = true`: a task's notifications are replies under its live
-- message. Where the platform keeps replies in a thread of their own
-- (Discord), the thread opened from the live message, kept like the
-- message's own handle so restarts and replicas post into the same one.
ALTER TABLE task_channels ADD COLUMN thread_id TEXT;
