-- Leases are looked up among a channel's `sending` receipts, which
-- receipts_due (channel, status, next_attempt_at) already narrows to a
-- handful; a second index on the same prefix cost every claim and every
-- outcome two more index writes.
DROP INDEX receipts_leases;
