DROP TABLE events;
DROP TABLE payment_metadata;
DROP TABLE payments;
DROP TABLE secret_keys;
DROP TABLE memberships;
DROP TABLE workspaces;
DROP TABLE users;
