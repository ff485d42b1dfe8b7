-- Payment sources: a payer's instrument, charged through a gateway. Never a card number.
CREATE TABLE sources (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    test_mode BOOLEAN NOT NULL,
    gateway TEXT NOT NULL,
    usage TEXT NOT NULL,
    customer TEXT,
    -- An exact decimal as the client gave it, read in the currency of the payment it pays.
    amount TEXT,
    description TEXT,
    status TEXT NOT NULL,
    return_url TEXT,
    -- Gateway-specific JSON (the sandbox's test token, transfer instructions).
    gateway_data TEXT NOT NULL,
    card_brand TEXT,
    card_last4 TEXT,
    card_exp_month INTEGER,
    card_exp_year INTEGER,
    metadata TEXT NOT NULL,
    version BIGINT NOT NULL,
    created TIMESTAMP NOT NULL,
    updated TIMESTAMP NOT NULL
);
CREATE INDEX sources_scope_created ON sources (workspace_id, test_mode, created DESC, id DESC);

-- Every charge attempt of a payment, with what the gateway answered.
CREATE TABLE payment_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    test_mode BOOLEAN NOT NULL,
    payment_id BIGINT NOT NULL REFERENCES payments (id) ON DELETE CASCADE,
    source_id BIGINT NOT NULL REFERENCES sources (id),
    gateway TEXT NOT NULL,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    failure_code TEXT,
    gateway_reference TEXT,
    created TIMESTAMP NOT NULL,
    updated TIMESTAMP NOT NULL
);
CREATE INDEX payment_attempts_payment ON payment_attempts (workspace_id, test_mode, payment_id, id);
-- The settling loop looks for charges in flight every second, across workspaces.
CREATE INDEX payment_attempts_in_flight ON payment_attempts (status, created);
