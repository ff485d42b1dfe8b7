-- Invoices: what a customer owes, in one currency, line by line. Amounts are integer
-- minor units; the lines are JSON (name, quantity, unit amount). `amount_paid` moves in the
-- transaction of each payment that succeeds for the invoice.
CREATE TABLE invoices (
    id TEXT PRIMARY KEY NOT NULL,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    test_mode BOOLEAN NOT NULL,
    customer TEXT NOT NULL REFERENCES customers (id),
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    lines TEXT NOT NULL,
    total BIGINT NOT NULL,
    amount_paid BIGINT NOT NULL,
    due_date DATE NOT NULL,
    description TEXT,
    metadata TEXT NOT NULL,
    finalized_at TIMESTAMP,
    paid_at TIMESTAMP,
    version BIGINT NOT NULL,
    created TIMESTAMP NOT NULL,
    updated TIMESTAMP NOT NULL
);
CREATE INDEX invoices_scope_created ON invoices (workspace_id, test_mode, created DESC, id DESC);
CREATE INDEX invoices_scope_customer ON invoices (workspace_id, test_mode, customer);
