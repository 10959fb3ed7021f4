-- Where a bot's pulled updates have got to (Telegram getUpdates): the last
-- update taken for handling, so none is handled twice across restarts.
CREATE TABLE bot_offsets (
    bot         TEXT    PRIMARY KEY,
    last_update INTEGER NOT NULL
);

-- The bot's answers to commands in a chat that is a configured channel,
-- sent by that channel's actor within the chat's rate limits (a reply sent
-- beside the actor could take the slot it counted on).
CREATE TABLE bot_answers (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    channel    TEXT    NOT NULL,
    answer     TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX bot_answers_by_channel ON bot_answers (channel, id);
