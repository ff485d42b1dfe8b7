-- Customers: who a payment (and, later, an invoice) belongs to. Ids are `cus_` + random.
CREATE TABLE customers (
    id TEXT PRIMARY KEY NOT NULL,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    test_mode BOOLEAN NOT NULL,
    name TEXT NOT NULL,
    email TEXT,
    tax_id TEXT,
    country TEXT,
    status TEXT NOT NULL,
    metadata TEXT NOT NULL,
    version BIGINT NOT NULL,
    created TIMESTAMP NOT NULL,
    updated TIMESTAMP NOT NULL
);
CREATE INDEX customers_scope_created ON customers (workspace_id, test_mode, created DESC, id DESC);
CREATE INDEX customers_scope_email ON customers (workspace_id, test_mode, email);
