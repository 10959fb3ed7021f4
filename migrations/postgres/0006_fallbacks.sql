-- Delivery contracts on herald's side (fallbacks.rs): when a receipt missed
-- (not surfaced within [contracts] surface_within, or failed for good) and
-- why; on the receipt sent in its place, the channel that missed. The
-- due-index holds only receipts that may still miss.
ALTER TABLE receipts ADD COLUMN missed_at BIGINT;
ALTER TABLE receipts ADD COLUMN miss_reason TEXT;
ALTER TABLE receipts ADD COLUMN fallback_for TEXT;
CREATE INDEX receipts_may_miss ON receipts (channel, created_at)
    WHERE missed_at IS NULL AND fallback_for IS NULL AND status <> 'surfaced';
