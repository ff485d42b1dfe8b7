DROP TABLE sign_in_links;
DROP TABLE console_sessions;
ALTER TABLE users DROP COLUMN password_hash;
