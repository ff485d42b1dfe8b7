-- How many payments each workspace and mode holds, per status and currency, kept in the
-- transaction of every insert, status or currency change, and delete: a list's count
-- without filters, or filtered by status and currency only, reads these few rows instead
-- of counting the table. Each change adds to one of 8 slots picked at random, so that
-- concurrent writes in one workspace do not queue on one row.
CREATE TABLE payment_counts (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    test_mode BOOLEAN NOT NULL,
    status TEXT NOT NULL,
    currency TEXT NOT NULL,
    slot INTEGER NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, test_mode, status, currency, slot)
);
INSERT INTO payment_counts (workspace_id, test_mode, status, currency, slot, n)
SELECT workspace_id, test_mode, status, currency, 0, count(*)
FROM payments
GROUP BY workspace_id, test_mode, status, currency;

-- The status filter's index, with the same tie-break as the default ordering.
DROP INDEX payments_scope_status;
CREATE INDEX payments_scope_status ON payments (workspace_id, test_mode, status, created DESC, id DESC);
