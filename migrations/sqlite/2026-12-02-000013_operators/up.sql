-- Issue 16: who did what (events' actor and request id), roles, and restricted keys.

-- Every event says who made it and in which request (or job run). Events written before
-- this migration were made by someone unknown.
ALTER TABLE events ADD COLUMN actor_type TEXT NOT NULL DEFAULT 'unknown';
ALTER TABLE events ADD COLUMN actor TEXT NOT NULL DEFAULT '{"type": "unknown"}';
ALTER TABLE events ADD COLUMN request_id TEXT NOT NULL DEFAULT '';
CREATE INDEX events_scope_request ON events (workspace_id, test_mode, request_id);
CREATE INDEX events_scope_actor ON events (workspace_id, test_mode, actor_type, id);

-- Roles: owner, admin, developer, viewer. Memberships made before roles were owners.
ALTER TABLE memberships ADD COLUMN role TEXT NOT NULL DEFAULT 'owner'
    CHECK (role IN ('owner', 'admin', 'developer', 'viewer'));

-- Keys: restricted permissions (NULL: a full secret key), a name, the last four characters
-- (shown as sk_test_…abcd), when last used, and when revoked (a revoked key stays listed).
ALTER TABLE secret_keys ADD COLUMN permissions TEXT;
ALTER TABLE secret_keys ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE secret_keys ADD COLUMN last4 TEXT NOT NULL DEFAULT '';
ALTER TABLE secret_keys ADD COLUMN last_used TIMESTAMP;
ALTER TABLE secret_keys ADD COLUMN revoked TIMESTAMP;

-- Changes to credentials anywhere (a token rotated, a key revoked, a role changed or a
-- member removed) bump this one number in their own transaction. A server trusts a
-- credential it has seen valid only while the number is unchanged, and reads it inside
-- every request's own database work: no server acts on a stale credential.
CREATE TABLE credential_epoch (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n BIGINT NOT NULL
);
INSERT INTO credential_epoch (id, n) VALUES (1, 0);
