-- Where a bot's pulled updates have got to (Telegram getUpdates): the last
-- update taken for handling, so none is handled twice across restarts and
-- replicas.
CREATE TABLE bot_offsets (
    bot         TEXT   PRIMARY KEY,
    last_update BIGINT NOT NULL
);

-- The bot's answers to commands in a chat that is a configured channel,
-- sent by that channel's actor within the chat's rate limits (a reply sent
-- beside the actor could take the slot it counted on).
CREATE TABLE bot_answers (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel    TEXT   NOT NULL,
    answer     TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX bot_answers_by_channel ON bot_answers (channel, id);
