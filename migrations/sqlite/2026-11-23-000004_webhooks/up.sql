-- Webhook endpoints of a workspace and mode, and the deliveries owed to them. Deliveries
-- are written in the transaction of the event they carry (the events table is the outbox).
CREATE TABLE webhooks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    test_mode BOOLEAN NOT NULL,
    url TEXT NOT NULL,
    -- JSON list of event types, `payment.*` patterns or `*`.
    events TEXT NOT NULL,
    description TEXT,
    enabled BOOLEAN NOT NULL,
    -- Why the server disabled it (consecutive failures); NULL when enabled or disabled by hand.
    disabled_reason TEXT,
    secret TEXT NOT NULL,
    -- The current run of failures with one status (0: no HTTP answer).
    failure_status INTEGER,
    failure_streak INTEGER NOT NULL,
    version BIGINT NOT NULL,
    created TIMESTAMP NOT NULL,
    updated TIMESTAMP NOT NULL
);
CREATE INDEX webhooks_scope ON webhooks (workspace_id, test_mode, id);

CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    test_mode BOOLEAN NOT NULL,
    webhook_id BIGINT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id BIGINT NOT NULL REFERENCES events (id),
    -- Deliveries of one object reach one webhook in order.
    object_id TEXT NOT NULL,
    -- pending, succeeded, failed (gave up after about 3 days)
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt TIMESTAMP NOT NULL,
    -- A worker's claim: nobody else sends it before then.
    claimed_until TIMESTAMP,
    last_status INTEGER,
    last_error TEXT,
    last_attempt TIMESTAMP,
    created TIMESTAMP NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt);
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (webhook_id, object_id, id);
