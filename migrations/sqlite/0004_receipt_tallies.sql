-- Receipts per status, kept by triggers in the same transaction as every
-- change, so /metrics reads four rows instead of counting the whole table
-- (surfaced receipts grow without bound).

CREATE TABLE receipt_tallies (
    status TEXT    PRIMARY KEY,
    n      INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO receipt_tallies (status, n)
    SELECT s.status, (SELECT COUNT(*) FROM receipts r WHERE r.status = s.status)
    FROM (SELECT 'pending' AS status UNION ALL SELECT 'sending' UNION ALL SELECT 'surfaced' UNION ALL SELECT 'failed') s;

CREATE TRIGGER receipts_tally_insert AFTER INSERT ON receipts
BEGIN
    INSERT INTO receipt_tallies (status, n) VALUES (NEW.status, 1)
        ON CONFLICT (status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER receipts_tally_update AFTER UPDATE OF status ON receipts
WHEN OLD.status IS NOT NEW.status
BEGIN
    UPDATE receipt_tallies SET n = n - 1 WHERE status = OLD.status;
    INSERT INTO receipt_tallies (status, n) VALUES (NEW.status, 1)
        ON CONFLICT (status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER receipts_tally_delete AFTER DELETE ON receipts
BEGIN
    UPDATE receipt_tallies SET n = n - 1 WHERE status = OLD.status;
END;
