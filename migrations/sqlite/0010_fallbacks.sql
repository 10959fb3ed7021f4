-- Delivery contracts on herald's side (fallbacks.rs): when a receipt missed
-- (not surfaced within [contracts] surface_within, or failed for good) and
-- why; on the receipt sent in its place, the channel that missed. No index
-- of its own: the watcher reads a fallback channel's receipts through
-- receipts_due (channel, status), and every index on receipts is paid on
-- each delivery's status change.
ALTER TABLE receipts ADD COLUMN missed_at INTEGER;
ALTER TABLE receipts ADD COLUMN miss_reason TEXT;
ALTER TABLE receipts ADD COLUMN fallback_for TEXT;
