-- A workspace's accounts at payment providers (Stripe), per mode. The credentials are
-- sealed (src/secrets.rs): `credentials` is hex(nonce || ciphertext) of their JSON, under
-- the key `credentials_key`; `credentials_shown` is their masked form (`sk_test_…4242`).
CREATE TABLE integrations (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    test_mode BOOLEAN NOT NULL,
    gateway TEXT NOT NULL,
    name TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    credentials TEXT NOT NULL,
    credentials_key TEXT NOT NULL,
    credentials_shown TEXT NOT NULL,
    version BIGINT NOT NULL,
    created TIMESTAMP NOT NULL,
    updated TIMESTAMP NOT NULL
);
CREATE INDEX integrations_scope_created ON integrations (workspace_id, test_mode, created DESC, id DESC);

-- The integration a source charges through (none for the built-in sandbox and bank
-- transfer), and the one each attempt went through.
ALTER TABLE sources ADD COLUMN integration_id TEXT;
ALTER TABLE payment_attempts ADD COLUMN integration_id TEXT;
