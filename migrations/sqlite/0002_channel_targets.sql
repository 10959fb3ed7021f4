-- Where a channel lives now, when the platform moved it (Telegram group →
-- supergroup migration): overrides the configured id until the config
-- names the new one.
CREATE TABLE channel_targets (
    channel   TEXT    PRIMARY KEY,
    target_id TEXT    NOT NULL,
    moved_at  INTEGER NOT NULL
);
