-- Safe retries: the first answer to a POST with an Idempotency-Key, per workspace, mode and
-- credential. A row is claimed (lock_token set) before the work runs and completed in the
-- work's own transaction, so an answer is stored if and only if its work committed.
CREATE TABLE idempotency_keys (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    test_mode BOOLEAN NOT NULL,
    -- Who sent it: "user:<id>", "key:<id>" or "checkout:<payment id>".
    credential TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_path TEXT NOT NULL,
    -- SHA-256 of the request's fields, keys sorted: a retry must send the same fields.
    fingerprint TEXT NOT NULL,
    -- Set while the first request runs; NULL once its answer is stored.
    lock_token TEXT,
    locked_at TIMESTAMP,
    response_status INTEGER,
    response_body TEXT,
    created TIMESTAMP NOT NULL,
    PRIMARY KEY (workspace_id, test_mode, credential, idempotency_key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created);
