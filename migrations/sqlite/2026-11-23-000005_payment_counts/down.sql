DROP INDEX payments_scope_status;
CREATE INDEX payments_scope_status ON payments (workspace_id, test_mode, status, created DESC);
DROP TABLE payment_counts;
