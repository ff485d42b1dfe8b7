-- Accounts: users, workspaces, memberships and workspace secret keys.
CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    -- SHA-256 of the user's one active API token; NULL when none.
    token_digest TEXT UNIQUE,
    created TIMESTAMP NOT NULL
);

CREATE TABLE workspaces (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created TIMESTAMP NOT NULL
);

CREATE TABLE memberships (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    user_id BIGINT NOT NULL REFERENCES users (id),
    created TIMESTAMP NOT NULL,
    PRIMARY KEY (workspace_id, user_id)
);

CREATE TABLE secret_keys (
    id BIGSERIAL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    test_mode BOOLEAN NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created TIMESTAMP NOT NULL
);

-- Tenant data: every row carries its workspace and mode.
CREATE TABLE payments (
    id BIGSERIAL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    test_mode BOOLEAN NOT NULL,
    -- Money in integer minor units; unit = 10^exponent of the currency.
    amount BIGINT NOT NULL,
    collected BIGINT NOT NULL,
    currency TEXT NOT NULL,
    unit BIGINT NOT NULL,
    date DATE NOT NULL,
    description TEXT NOT NULL,
    invoice TEXT,
    subscription TEXT,
    customer TEXT,
    payment_date TIMESTAMP,
    source BIGINT,
    sources TEXT NOT NULL,
    status TEXT NOT NULL,
    failed_reason TEXT,
    return_url TEXT,
    enable_checkout BOOLEAN NOT NULL,
    metadata TEXT NOT NULL,
    checkout_key TEXT NOT NULL UNIQUE,
    version BIGINT NOT NULL,
    created TIMESTAMP NOT NULL,
    updated TIMESTAMP NOT NULL
);
CREATE INDEX payments_scope_created ON payments (workspace_id, test_mode, created DESC, id DESC);
CREATE INDEX payments_scope_status ON payments (workspace_id, test_mode, status, created DESC);
CREATE INDEX payments_scope_customer ON payments (workspace_id, test_mode, customer);
CREATE INDEX payments_scope_invoice ON payments (workspace_id, test_mode, invoice);

-- One row per metadata key, so that metadata__key=value filters the same way on both backends.
CREATE TABLE payment_metadata (
    payment_id BIGINT NOT NULL REFERENCES payments (id) ON DELETE CASCADE,
    workspace_id TEXT NOT NULL,
    test_mode BOOLEAN NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (payment_id, key)
);
CREATE INDEX payment_metadata_lookup ON payment_metadata (workspace_id, test_mode, key, value);

-- The audit trail and the webhook outbox.
CREATE TABLE events (
    id BIGSERIAL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    test_mode BOOLEAN NOT NULL,
    event_type TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    data TEXT NOT NULL,
    created TIMESTAMP NOT NULL
);
CREATE INDEX events_scope_id ON events (workspace_id, test_mode, id DESC);
CREATE INDEX events_scope_object ON events (workspace_id, test_mode, object_id, id DESC);
