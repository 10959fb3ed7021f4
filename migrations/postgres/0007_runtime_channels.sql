-- Channels made at run time for the targets of events' own alert policies
-- (alert_policy.rs): the target, secrets included, as JSON. Never shown by
-- any API; merged into the running config by every replica.
CREATE TABLE runtime_channels (
    name       TEXT    PRIMARY KEY,
    target     TEXT    NOT NULL,
    created_at BIGINT  NOT NULL
);
