-- Issue 18: the console's sign-in. A user may have a password (an Argon2id hash in PHC
-- form; NULL: none, sign in with a link), console sessions (cookies: only the SHA-256 of
-- the cookie's secret is kept) and one-time sign-in links (likewise).
ALTER TABLE users ADD COLUMN password_hash TEXT;

CREATE TABLE console_sessions (
    digest TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id),
    -- The workspace and mode the header shows (NULL: the user's first workspace).
    workspace_id TEXT,
    test_mode BOOLEAN NOT NULL DEFAULT FALSE,
    created TIMESTAMP NOT NULL,
    last_seen TIMESTAMP NOT NULL
);
CREATE INDEX console_sessions_user ON console_sessions (user_id);

CREATE TABLE sign_in_links (
    digest TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id),
    created TIMESTAMP NOT NULL,
    expires TIMESTAMP NOT NULL,
    used TIMESTAMP
);
