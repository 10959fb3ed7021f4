-- A surfaced notification whose message must be rendered again (its task
-- was acknowledged: the message names who, and loses its button). The
-- channel's actor edits it within the channel's budget and clears the mark.
ALTER TABLE receipts ADD COLUMN needs_edit BOOLEAN NOT NULL DEFAULT FALSE;
-- Partial: empty almost always, and untouched by status changes.
CREATE INDEX receipts_to_edit ON receipts (channel) WHERE needs_edit;
